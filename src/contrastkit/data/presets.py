"""What contrastkit knows of each dataset: size, channels, normalisation, crop and flip defaults,
and the training views and evaluation inputs built from them.

One owner for these facts: training (``train/data.py``) and evaluation (``eval/``) both ask here,
with explicit arguments rather than a whole configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .augment import BatchAugment
from .datasets import FOLDER_DATASET_NAMES, canonical_name
from .recipes import resolve_views, views_as_dicts

__all__ = [
    "DATASETS",
    "DataRecipe",
    "DatasetPreset",
    "dataset_preset",
    "load_size",
    "preset_name",
]


@dataclass(frozen=True)
class DatasetPreset:
    """Size, channels and normalisation statistics of a dataset, plus its recipe defaults.

    ``scale`` is the crop scale of its global views (None: the recipe's default) and ``flip_p``
    its flip probability.
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: tuple[float, float] | None = None
    flip_p: float = 0.5


# Digits are not mirror-symmetric, so MNIST-like digit sets get no flip; tiny 8 px digits get
# gentler crops, as a 0.08 crop of an 8×8 image is barely two pixels wide.
DATASETS: dict[str, DatasetPreset] = {
    "cifar10": DatasetPreset(32, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetPreset(32, 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": DatasetPreset(96, 3, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "imagenet": DatasetPreset(224, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": DatasetPreset(28, 1, (0.1307,), (0.3081,), scale=(0.2, 1.0), flip_p=0.0),
    "fashion_mnist": DatasetPreset(28, 1, (0.2860,), (0.3530,), scale=(0.2, 1.0)),
    "digits": DatasetPreset(8, 1, (0.3053,), (0.3760,), scale=(0.25, 1.0), flip_p=0.0),
}

# The preset of each dataset name; image folders (ImageNet and the rest) use ImageNet's.
_PRESET_OF = {
    "digits": "digits",
    "fashion-mnist": "fashion_mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "stl10": "stl10",
}


def preset_name(dataset: str) -> str:
    """The key in ``DATASETS`` of a dataset name (any spelling ``canonical_name`` accepts)."""
    return _PRESET_OF.get(canonical_name(dataset), "imagenet")


def dataset_preset(dataset: str) -> DatasetPreset:
    """The preset of a dataset name."""
    return DATASETS[preset_name(dataset)]


def load_size(dataset: str, image_size: int | None) -> int | None:
    """The ``image_size`` to load ``dataset`` with: image folders are resized while decoding;
    in-memory datasets keep their stored size and are resized on the device instead."""
    return image_size if canonical_name(dataset) in FOLDER_DATASET_NAMES else None


@dataclass(frozen=True)
class DataRecipe:
    """How a dataset's uint8 images become network inputs: normalisation at ``image_size``
    (resizing on the device when the stored size differs) and the augmentation views."""

    dataset: str
    image_size: int
    channels: int
    mean: tuple[float, ...] | None = None  # measured on the data (image folders); None: preset's
    std: tuple[float, ...] | None = None

    @property
    def preset(self) -> DatasetPreset:
        return dataset_preset(self.dataset)

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The per-channel normalisation: measured on the data if it was, else the preset's."""
        if self.mean is not None and self.std is not None:
            return tuple(self.mean), tuple(self.std)
        return self.preset.mean, self.preset.std

    def normalization(self) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std (as (1, C, 1, 1) tensors) for un-augmented inputs."""
        mean, std = self.mean_std()
        return torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) images as float32 at ``image_size``, standardised per channel."""
        mean, std = (t.to(images.device) for t in self.normalization())
        pixels = images.float() / 255
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            shrink = min(pixels.shape[-2:]) > self.image_size
            pixels = F.interpolate(
                pixels,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=shrink,
            )
        return (pixels - mean) / std

    def views(
        self,
        augment: Mapping[str, Any] | None = None,
        *,
        n_global: int = 2,
        n_local: int = 0,
        local_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """The fully resolved augmentation, one plain dict per view (global views first)."""
        return views_as_dicts(self._specs(augment, n_global, n_local, local_size), n_global)

    def augmentation(
        self,
        augment: Mapping[str, Any] | None = None,
        *,
        n_global: int = 2,
        n_local: int = 0,
        local_size: int | None = None,
    ) -> BatchAugment:
        """The batched augmentation of ``augment`` (a recipe name or mapping; see
        ``data.recipes``) for this dataset, with ``n_global`` + ``n_local`` views."""
        return BatchAugment(self._specs(augment, n_global, n_local, local_size))

    def _specs(
        self,
        augment: Mapping[str, Any] | None,
        n_global: int,
        n_local: int,
        local_size: int | None,
    ) -> Sequence:
        preset = self.preset
        mean, std = self.mean_std()
        return resolve_views(
            augment or {},
            image_size=self.image_size,
            channels=self.channels,
            mean=mean,
            std=std,
            global_scale=preset.scale,
            flip_p=preset.flip_p,
            n_global=n_global,
            n_local=n_local,
            local_size=local_size,
        )
