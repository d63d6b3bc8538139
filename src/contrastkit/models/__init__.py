"""Models: backbones (image → features), projection/prediction heads, and the EMA target.

Importing this package does not import torchvision; `build_backbone` does, when first called.
"""

from .backbones import BACKBONES, SMALL_IMAGE_SIZE, Backbone, build_backbone
from .ema import EMA, EMASchedule, cosine_momentum
from .heads import HEAD_PRESETS, HeadSpec, head_preset, projection_mlp

__all__ = [
    "BACKBONES",
    "EMA",
    "HEAD_PRESETS",
    "SMALL_IMAGE_SIZE",
    "Backbone",
    "EMASchedule",
    "HeadSpec",
    "build_backbone",
    "cosine_momentum",
    "head_preset",
    "projection_mlp",
]
