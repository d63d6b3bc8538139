"""The evaluation view: images as trained, or the seeds' Resize + CenterCrop (256 → 224)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .errors import EvaluationError


def check_view(resize: int, crop: int) -> tuple[int, int]:
    """(resize, crop) sides, checked: both 0 (as trained), or 0 < crop <= resize."""
    if (resize, crop) == (0, 0):
        return 0, 0
    if resize < 1 or crop < 1 or crop > resize:
        raise EvaluationError(
            f"resize={resize}, crop={crop}: need both 0 (as trained) or 0 < crop <= resize"
        )
    return resize, crop


def resize_center_crop(images: Tensor, resize: int, crop: int) -> Tensor:
    """Float (B, C, H, W) images with the shorter side resized to `resize` (bilinear,
    antialiased) and the centre `crop` × `crop` kept; unchanged for resize=0."""
    if resize == 0:
        return images
    height, width = images.shape[-2:]
    scale = resize / min(height, width)
    size = (max(resize, round(height * scale)), max(resize, round(width * scale)))
    if size != (height, width):
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True)
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    return images[..., top : top + crop, left : left + crop]
