"""contrastkit: contrastive and self-supervised representation learning on images."""

__version__ = "0.1.0"
