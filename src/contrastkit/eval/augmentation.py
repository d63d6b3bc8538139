"""Training-time augmentation of evaluation heads: random resized crop and flip on the device,
no colour changes (solo-learn's and SupContrast's linear evaluation, and our finetune)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.augment import BatchAugment, ViewSpec
from ..data.presets import DataRecipe
from .data import batches
from .encoder import Encoder
from .features import embed


def crop_flip(recipe: DataRecipe, size: int, min_scale: float | None = None) -> BatchAugment:
    """Random resized crop to `size` at scale (`min_scale`, 1) (default: the dataset's
    pretraining crop scale, also for 0) and the dataset's flip, normalised as in training."""
    stats = recipe.preset
    scale = (min_scale, 1.0) if min_scale else stats.scale or (0.08, 1.0)
    view = ViewSpec(size=size, scale=scale, flip_p=stats.flip_p, jitter_p=0.0, grayscale_p=0.0)
    mean, std = recipe.mean_std()
    return BatchAugment([view], mean=mean, std=std)


class AugmentedFeatures:
    """Features of freshly augmented training images through the frozen encoder (eval mode, no
    gradient): called with sample indices and a generator, so every epoch sees new views."""

    def __init__(self, encoder: Encoder, features: str, min_scale: float) -> None:
        self.encoder, self.features = encoder, features
        self.images = encoder.load("train")
        self.augment = crop_flip(encoder.recipe(), encoder.input_size, min_scale)

    @torch.no_grad()
    def __call__(self, indices: Tensor, generator: torch.Generator) -> Tensor:
        images, _ = next(iter(batches(self.images, len(indices), indices.cpu())))
        (view,) = self.augment(images.to(self.encoder.device), generator=generator)
        return embed(self.encoder, view, self.features).float()
