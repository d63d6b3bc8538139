"""The data of a pretraining run: training samples, the split the online probe reports on,
their augmentation, and the batch iterables that serve them on the training device."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ..data.augment import BatchAugment
from ..data.bad_files import DEFAULT_MAX_BAD_FRACTION, BadFiles
from ..data.datasets import (
    DatasetNotFoundError,
    InMemoryImages,
    Stats,
    StreamingImages,
    canonical_name,
    holdout_split,
    load_dataset,
)
from ..data.file_loader import FileBatch, FileBatchFinisher, collate_files, file_samples
from ..data.memory_loader import DeviceBatches
from ..data.presets import DataRecipe, dataset_preset, load_size
from ..data.streaming import ShardBatches, ShardImages
from ..methods.spec import METHODS
from .config import ConfigError, PretrainConfig

Images = InMemoryImages | StreamingImages | ShardImages
_log = logging.getLogger(__name__)


@dataclass
class PretrainData:
    """Training samples, the probe's evaluation samples, and what the models need to know.

    ``val_note`` says what ``val`` holds (the dataset's test split, or a held-out part of the
    training split), or why there is none, for the log.
    """

    train: Images
    val: Images | None
    num_classes: int
    channels: int
    image_size: int
    recipe: DataRecipe
    val_note: str = ""

    def mean_std(self) -> tuple[Stats, Stats]:
        """The per-channel normalisation: measured on the data if it was, else the preset's."""
        return self.recipe.mean_std()

    def augmentation(self, config: PretrainConfig) -> BatchAugment:
        """The run's views (``config.augment``) of this dataset, global then local."""
        try:
            return self.recipe.augmentation(config.augment, **_view_counts(config))
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) images as float32 at the run's size, standardised per channel."""
        return self.recipe.normalize(images)


def _view_counts(config: PretrainConfig) -> dict[str, Any]:
    return {"n_global": config.n_global, "n_local": config.n_local, "local_size": config.local_size}


def resolved_augmentation(config: PretrainConfig) -> list[dict[str, Any]]:
    """The run's augmentation as plain dicts, one per view, without loading any data.

    Image folders without ``image_size`` are taken at their preset's size (ImageNet's 224).
    """
    preset = dataset_preset(config.dataset)
    recipe = DataRecipe(config.dataset, config.image_size or preset.size, preset.channels)
    try:
        return recipe.views(config.augment, **_view_counts(config))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def load_pretrain_data(config: PretrainConfig) -> PretrainData:
    """Load the training split, and the split the online probe reports on.

    With ``val_fraction`` 0 the whole training split pretrains and the probe reports on the
    dataset's test (or val) split; above 0 the last ``val_fraction`` of each class is held out
    for it instead. STL-10 pretrains on ``stl10_split``: its unlabeled images, with or without
    the labelled train split.
    """
    name = canonical_name(config.dataset)
    labelled = _load(config, name, "train")
    if not _probe_possible(config, labelled):
        train, val, note = labelled, None, "no probe: unlabelled or single-class data"
    elif config.val_fraction > 0:
        if isinstance(labelled, ShardImages):
            raise ConfigError(
                f"val_fraction={config.val_fraction}: shards are read as written; valid: "
                "val_fraction=0 with the shards' val/ split, or a split made before prepare"
            )
        keep, held = holdout_split(labelled.labels, config.val_fraction)
        train, val = labelled.subset(keep), labelled.subset(held)
        note = f"held-out last {config.val_fraction:g} of each class of {name}'s train split"
    else:
        train = labelled
        val, note = _probe_split(config, name)
    if name == "stl10":
        unlabeled = _load(config, name, "unlabeled")
        if config.stl10_split == "unlabeled":
            train = unlabeled
            if config.val_fraction == 0:
                val, note = None, "no probe: stl10_split=unlabeled has no labels to train it on"
        else:
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
    image_size = config.image_size or sample.shape[-1]
    return PretrainData(
        train=train,
        val=val,
        num_classes=len(labelled.classes),
        channels=sample.shape[0],
        image_size=image_size,
        recipe=DataRecipe(
            name,
            image_size,
            sample.shape[0],
            mean=getattr(labelled, "mean", None),
            std=getattr(labelled, "std", None),
        ),
        val_note=note,
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


def _probe_split(config: PretrainConfig, name: str) -> tuple[Images | None, str]:
    """The dataset's test (or val) split for the probe, or None and the reason."""
    if not config.probe:
        return None, "no probe: probe=false"
    try:
        return _load(config, name, "test"), f"the test split of {name} (val/ for image folders)"
    except DatasetNotFoundError as error:
        reason = " ".join(str(error).split())
        return None, f"no probe: {name} has no test split to report on ({reason})"


def _load(config: PretrainConfig, name: str, split: str) -> Images:
    return load_dataset(
        name,
        split,
        config.data_dir,
        cache_dir=config.cache_dir,
        download=config.download,
        image_size=load_size(name, config.image_size),
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
    DataLoader with worker processes, shards through LitData's StreamingDataLoader, whose
    position after each batch `position` gives for a checkpoint and `resume` restores. Both
    hand over ``FileBatch``es decoded in the workers or on the device (``decode``, see
    ``data.file_loader``), finished alike; unreadable files and shard samples are left out
    and counted in ``bad_files``.
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
        decode: str = "pil",
        max_side: int | None = None,
        bad_files: BadFiles | None = None,
    ):
        self.epoch, self.seed, self.shuffle = epoch, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.device = device
        self._resume_at = (0, 0)  # (served, read) batches the next iteration starts after
        self._began = (0, 0)  # those of the current iteration
        self._dropped: list[int] = []  # batches served when each all-unreadable batch was read
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
            if isinstance(images, ShardImages):
                pin = device.type == "cuda"
                self.source = images.batches(batch_size, workers, shuffle, seed, decode, pin)
                names = images.names
            else:
                self.source = self._streaming_loader(images, batch_size, workers, decode)
                names = images.paths
            self.finish = FileBatchFinisher(
                names,
                device,
                bad_files
                if bad_files is not None
                else BadFiles(len(images), DEFAULT_MAX_BAD_FRACTION),
                max_side,
                fill_to=batch_size if world_size > 1 and shuffle else None,
            )

    def _streaming_loader(
        self, images: StreamingImages, batch_size: int, workers: int, decode: str
    ):
        if self.world_size > 1:
            sampler = DistributedSampler(
                images, self.world_size, self.rank, shuffle=self.shuffle, seed=self.seed
            )
        else:
            sampler = RandomSampler(images) if self.shuffle else None
        return DataLoader(
            file_samples(images, decode),
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate_files,
            drop_last=self.shuffle,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return len(self.source)

    def resume(self, position: dict[str, Any]) -> None:
        """Start the next iteration inside an epoch, at a saved `position` (module checkpoint)."""
        served = int(position["batches"])
        read = int(position.get("read", served))
        self._resume_at = (served, read)
        if isinstance(self.source, ShardBatches):
            self.source.resume(position.get("loader"), read)

    def position(self, batches: int) -> dict[str, Any]:
        """What `resume` needs beyond the count of `batches` served: the loader's batches read
        by then (more when a batch was all unreadable), and a shard loader's state there."""
        served, read = self._began
        read += batches - served + sum(1 for at in self._dropped if at < batches)
        if isinstance(self.source, ShardBatches):
            return {"read": read, "loader": self.source.position(read)}
        return {"read": read}

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        self._began, self._resume_at = self._resume_at, (0, 0)
        served = self._began[0]
        self._dropped = []
        for batch in self._epoch_batches(self.epoch()):
            if isinstance(batch, FileBatch):  # (images, labels[, sizes]); None: all unreadable
                finished = self.finish(batch)
                if finished is None:
                    self._dropped.append(served)
                    continue
                served += 1
                yield finished
                continue
            images, labels = batch
            served += 1
            yield images.to(self.device, non_blocking=True), labels.to(self.device)

    def _epoch_batches(self, epoch: int) -> Iterable:
        """The source's batches of `epoch`, after those read before a resumed position."""
        if isinstance(self.source, ShardBatches):
            return self.source.epoch(epoch)
        if isinstance(self.source, DeviceBatches):
            self.source.set_epoch(epoch)
        elif isinstance(self.source.sampler, DistributedSampler):
            self.source.sampler.set_epoch(epoch)
        elif isinstance(self.source.sampler, RandomSampler):
            self.source.sampler.generator = torch.Generator().manual_seed(
                epoch_seed(self.seed, epoch, self.rank)
            )
        return itertools.islice(self.source, self._began[1], None)
