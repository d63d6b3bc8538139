"""The data of a pretraining run: training samples, the held-out split for the online probe,
their augmentation, and the batch iterables that serve them on the training device."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ..data.augment import DATASETS, BatchAugment, simclr_views
from ..data.datasets import (
    InMemoryImages,
    Stats,
    StreamingImages,
    canonical_name,
    holdout_split,
    load_dataset,
)
from ..data.memory_loader import DeviceBatches
from ..methods.spec import METHODS
from .config import ConfigError, PretrainConfig

Images = InMemoryImages | StreamingImages
_log = logging.getLogger(__name__)

# Augmentation presets (normalisation statistics, crop scale, flip) of each dataset name;
# folder datasets use ImageNet's, with the statistics measured on the folder when it is held in
# memory.
_AUGMENT_PRESETS = {
    "digits": "digits",
    "fashion-mnist": "fashion_mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "stl10": "stl10",
}


def augment_preset(dataset: str) -> str:
    """The augmentation preset (normalisation, crop scale, flip) of a dataset name."""
    return _AUGMENT_PRESETS.get(canonical_name(dataset), "imagenet")


@dataclass
class PretrainData:
    """Training samples, the probe's held-out samples, and what the models need to know."""

    train: Images
    val: Images | None
    num_classes: int
    channels: int
    image_size: int
    augment_preset: str
    mean: Stats | None = None  # measured on the data; None: the preset's
    std: Stats | None = None

    def mean_std(self) -> tuple[Stats, Stats]:
        """The per-channel normalisation: measured on the data if it was, else the preset's."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        preset = DATASETS[self.augment_preset]
        return preset.mean, preset.std

    def augmentation(self, config: PretrainConfig) -> BatchAugment:
        """SimCLR views of this dataset with the run's global and local crops."""
        preset = DATASETS[self.augment_preset]
        views = simclr_views(
            self.image_size,
            self.channels,
            n_global=config.n_global,
            n_local=config.n_local,
            local_size=config.local_size,
            global_scale=preset.scale,
            flip_p=preset.flip_p,
        )
        mean, std = self.mean_std()
        return BatchAugment(views, mean=mean, std=std)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) images as float32, standardised per channel as in training."""
        mean, std = (t.to(images.device) for t in self.normalization())
        return (images.float() / 255 - mean) / std

    def normalization(self) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std (as (1, C, 1, 1) tensors) for un-augmented evaluation."""
        mean, std = self.mean_std()
        return torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)


def load_pretrain_data(config: PretrainConfig) -> PretrainData:
    """Load the training split and hold out the last `val_fraction` of each class for the probe.

    STL-10 pretrains on its train and unlabeled splits together; the probe's held-out part comes
    from the labelled train split only.
    """
    name = canonical_name(config.dataset)
    labelled = _load(config, name, "train")
    if config.val_fraction > 0 and _probe_possible(config, labelled):
        keep, held = holdout_split(labelled.labels, config.val_fraction)
        train, val = labelled.subset(keep), labelled.subset(held)
    else:
        train, val = labelled, None
    if name == "stl10":
        unlabeled = _load(config, name, "unlabeled")
        train = InMemoryImages(
            torch.cat([train.images, unlabeled.images]),
            torch.cat([train.labels, unlabeled.labels]),
            train.classes,
        )
    ranks = config.devices * config.num_nodes
    if len(train) < config.batch_size * ranks:  # else Lightning "trains" on no batch at all
        raise ConfigError(
            f"batch_size={config.batch_size}: {name} has {len(train)} training images "
            f"(after val_fraction={config.val_fraction}), too few for one batch on each of "
            f"{ranks} device(s); valid: batch_size <= {len(train) // ranks}"
        )
    sample, _ = train[0]
    return PretrainData(
        train=train,
        val=val,
        num_classes=len(labelled.classes),
        channels=sample.shape[0],
        image_size=sample.shape[-1],
        augment_preset=augment_preset(name),
        mean=getattr(labelled, "mean", None),
        std=getattr(labelled, "std", None),
    )


def _probe_possible(config: PretrainConfig, labelled: Images) -> bool:
    """Whether the data can have a probe: not unlabelled data, nor a single class, whose probe
    would score top-1 1.0 whatever the features (the module then builds none). Said once."""
    classes = labelled.classes
    if len(classes) > 1:
        return True
    where = config.data_dir or config.dataset
    if not classes and METHODS[config.method].needs_labels:
        raise ConfigError(
            f"method={config.method} needs labels, but {where} holds unlabelled images "
            "(no class folders); valid: a self-supervised method, or train/<class>/ folders"
        )
    if not classes:
        _log.warning(
            "%s: %d unlabelled images (no class folders); pretraining on all, probe off",
            where,
            len(labelled),
        )
    elif config.probe:
        _log.warning(
            "%s: a single class (%s), so a probe would score top-1 1.0 whatever it learns; "
            "probe off, nothing held out",
            where,
            classes[0],
        )
    return False


def _load(config: PretrainConfig, name: str, split: str) -> Images:
    return load_dataset(
        name,
        split,
        config.data_dir,
        cache_dir=config.cache_dir,
        download=config.download,
        image_size=config.image_size,
        workers=config.workers or None,
    )


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """An independent 63-bit seed for each (run seed, epoch, rank)."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class EpochBatches:
    """Serve one epoch's shuffled (uint8 images, labels) batches, chosen by the epoch number.

    The epoch is read from `epoch()` at each `iter()`, so a resumed run replays exactly the
    epoch it was interrupted in. In-memory data lives on the device; folders stream through a
    DataLoader with worker processes.
    """

    def __init__(
        self,
        images: Images,
        batch_size: int,
        device: torch.device,
        seed: int,
        epoch: Callable[[], int],
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        workers: int = 2,
    ):
        self.epoch, self.seed, self.shuffle = epoch, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.device = device
        self.skip = 0  # batches of the next iteration to pass over (a mid-epoch resume)
        if isinstance(images, InMemoryImages):
            self.source: Iterable = DeviceBatches(
                images.images.to(device),
                images.labels.to(device),
                batch_size,
                shuffle=shuffle,
                drop_last=shuffle,
                generator=torch.Generator().manual_seed(seed),
                rank=rank,
                world_size=world_size,
            )
        else:
            self.source = self._streaming_loader(images, batch_size, workers)

    def _streaming_loader(self, images: StreamingImages, batch_size: int, workers: int):
        if self.world_size > 1:
            sampler = DistributedSampler(
                images, self.world_size, self.rank, shuffle=self.shuffle, seed=self.seed
            )
        else:
            sampler = RandomSampler(images) if self.shuffle else None
        return DataLoader(
            images,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=self.shuffle,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch()
        if isinstance(self.source, DeviceBatches):
            self.source.set_epoch(epoch)
        elif isinstance(self.source.sampler, DistributedSampler):
            self.source.sampler.set_epoch(epoch)
        elif isinstance(self.source.sampler, RandomSampler):
            self.source.sampler.generator = torch.Generator().manual_seed(
                epoch_seed(self.seed, epoch, self.rank)
            )
        skip, self.skip = self.skip, 0
        for images, labels in itertools.islice(self.source, skip, None):
            yield images.to(self.device, non_blocking=True), labels.to(self.device)
