"""Decode a batch of raw image files on the training device into one padded uint8 batch.

torchvision's batched ``decode_jpeg`` (nvJPEG on a GPU, libjpeg-turbo on the CPU) decodes the
whole batch in one call. When it rejects the batch, each file is tried alone, and the files it
rejects (a PNG named .JPEG, a CMYK JPEG on nvJPEG, a broken file) are decoded by PIL; those PIL
cannot read either are reported, not raised. Whole images keep their sizes: each sits in the
top-left corner of the padded batch, zeros elsewhere, with its (height, width) alongside.
Images whose longer side exceeds ``max_side`` are shrunk first (aspect kept, antialiased), so
the padded batch stays bounded whatever the folder holds.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DecodedBatch", "decode_batch", "pad_images"]


@dataclass
class DecodedBatch:
    """What decoding a batch of files gave."""

    images: Tensor  # uint8 (B, 3, H, W), each image in its top-left (h, w) corner
    sizes: Tensor  # int64 (B, 2) on the CPU: each image's (h, w)
    kept: list[int]  # positions in the input of the decoded files, in order
    failures: list[tuple[int, str]]  # (position in the input, reason) of unreadable files


def decode_batch(
    files: Sequence[Tensor], device: torch.device, max_side: int | None = None
) -> DecodedBatch:
    """Decode ``files`` (each file's bytes as a uint8 CPU tensor) to RGB on ``device``."""
    images = _decode_jpegs(files, device)
    failures: list[tuple[int, str]] = []
    for position, image in enumerate(images):
        if isinstance(image, str):
            decoded = _decode_pil(files[position])
            if isinstance(decoded, str):
                failures.append((position, decoded))
            else:
                images[position] = decoded.to(device)
    kept = [p for p, image in enumerate(images) if isinstance(image, Tensor)]
    chosen = [_shrink(images[p], max_side) for p in kept]  # type: ignore[arg-type]
    padded, sizes = pad_images(chosen, device)
    return DecodedBatch(padded, sizes, kept, failures)


def pad_images(images: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """uint8 (C, h, w) images of different sizes as one zero-padded (B, C, H, W) batch, each in
    its top-left corner, and their (h, w) as an int64 (B, 2) CPU tensor."""
    sizes = torch.tensor([tuple(image.shape[1:]) for image in images], dtype=torch.int64)
    sizes = sizes.view(-1, 2)
    height, width = (int(v) for v in sizes.amax(dim=0)) if len(images) else (1, 1)
    channels = images[0].shape[0] if len(images) else 3
    padded = torch.zeros(len(images), channels, height, width, dtype=torch.uint8, device=device)
    for slot, image in zip(padded, images, strict=True):
        slot[:, : image.shape[1], : image.shape[2]] = image
    return padded, sizes


def _decode_jpegs(files: Sequence[Tensor], device: torch.device) -> list[Tensor | str]:
    """Each file as uint8 RGB (3, h, w) on ``device``, or why torchvision could not decode it."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(list(files), mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad file fails the whole batch: try each alone
        decoded: list[Tensor | str] = []
        for data in files:
            try:
                decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError as error:
                decoded.append(" ".join(str(error).split()))
        return decoded


def _decode_pil(data: Tensor) -> Tensor | str:
    """A file's bytes decoded by PIL to uint8 RGB (3, h, w) on the CPU, or a one-line reason."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        return " ".join(str(error).split()) or type(error).__name__
    return torch.from_numpy(np.asarray(rgb).transpose(2, 0, 1).copy())


def _shrink(image: Tensor, max_side: int | None) -> Tensor:
    """``image`` with its longer side at most ``max_side`` (aspect kept, antialiased)."""
    height, width = image.shape[1:]
    if max_side is None or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    pixels = F.interpolate(
        image.unsqueeze(0).float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return pixels.squeeze(0).round_().clamp_(0, 255).to(torch.uint8)
