"""Datasets as uint8 image tensors, and a loader that batches them on the training device.

Light to import: scikit-learn, torchvision and PIL load only when a dataset needs them.
"""

from contrastkit.data.datasets import (
    DATASET_NAMES,
    CorruptImageError,
    DatasetNotFoundError,
    InMemoryImages,
    StreamingImages,
    canonical_name,
    default_cache_dir,
    holdout_split,
    load_dataset,
)
from contrastkit.data.imagenet100_classes import IMAGENET100_CLASSES
from contrastkit.data.memory_loader import DeviceBatches

__all__ = [
    "DATASET_NAMES",
    "IMAGENET100_CLASSES",
    "CorruptImageError",
    "DatasetNotFoundError",
    "DeviceBatches",
    "InMemoryImages",
    "StreamingImages",
    "canonical_name",
    "default_cache_dir",
    "holdout_split",
    "load_dataset",
]
