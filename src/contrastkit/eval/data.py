"""The evaluation data of an encoder: its splits, their normalisation and their batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..data import InMemoryImages, StreamingImages, load_dataset
from ..data.presets import DataRecipe, load_size
from .errors import EvaluationError

Images = InMemoryImages | StreamingImages


def load_split(
    dataset: str, split: str, data_dir: str | None, cache_dir: Path, resize: int | None
) -> Images:
    """Split `split` of `dataset`; a missing or unreadable dataset raises EvaluationError.

    Image folders are decoded at `resize`; in-memory datasets keep their size (the recipe
    resizes them on the device)."""
    try:
        size = load_size(dataset, resize)
        return load_dataset(dataset, split, data_dir, cache_dir=cache_dir, image_size=size)
    except ValueError as error:  # DatasetNotFoundError, CorruptImageError, bad name or split
        raise EvaluationError(str(error)) from None


def normalize(images: Tensor, recipe: DataRecipe) -> Tensor:
    """uint8 (B, C, H, W) images as float32 at the recipe's size, standardised as in training."""
    return recipe.normalize(images)


def batches(
    images: Images, batch_size: int, indices: Tensor | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """(uint8 images, labels) CPU batches of `images`, or of `indices` in their order."""
    if isinstance(images, InMemoryImages):
        order = torch.arange(len(images)) if indices is None else indices
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            yield images.images[chosen], images.labels[chosen]
        return
    subset = images if indices is None else images.subset(indices)
    yield from DataLoader(subset, batch_size=batch_size, num_workers=min(8, os.cpu_count() or 1))
