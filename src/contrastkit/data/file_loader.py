"""What DataLoader workers hand over for a streamed image folder, and how a batch of it is
finished on the training device.

Two ways, by ``decode``: ``"pil"`` decodes, resizes (shorter side) and centre-crops each file to
``image_size`` in the workers (the old path; crops then see only the centre square); ``"bytes"``
has the workers read each file's raw bytes only, and the batch is decoded on the training device
(``batch_decode``), whole, padded, with each image's size, so random crops come from the whole
image. In both, an unreadable file travels as a failure instead of an exception: the batch
leaves it out and ``BadFiles`` counts it, so one broken file never ends an epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .bad_files import BadFiles
from .batch_decode import decode_batch
from .datasets import CorruptImageError, StreamingImages

__all__ = [
    "DECODE_MODES",
    "FileBatch",
    "FileBatchFinisher",
    "check_file_loading",
    "collate_files",
    "file_samples",
]

DECODE_MODES = ("bytes", "pil")
"""Where streamed folder images are decoded: on the training device (whole), or in workers."""


@dataclass
class FileSample:
    """One file as a worker read it: pixels ("pil"), bytes ("bytes"), or why it failed."""

    index: int
    payload: Tensor | None
    label: Tensor
    failure: str | None = None


@dataclass
class FileBatch:
    """A batch as the workers collated it; ``failures`` are (dataset index, reason)."""

    payload: Tensor | list[Tensor]  # stacked uint8 (B, 3, s, s) pixels, or each file's bytes
    labels: Tensor
    indices: Tensor  # dataset index of each payload sample
    failures: list[tuple[int, str]]

    def pin_memory(self) -> FileBatch:
        """Page-locked copies, so the copy to a GPU overlaps compute (DataLoader calls it)."""
        payload = (
            self.payload.pin_memory()
            if isinstance(self.payload, Tensor)
            else [data.pin_memory() for data in self.payload]
        )
        return FileBatch(payload, self.labels.pin_memory(), self.indices, self.failures)


class _DecodedFiles(Dataset[FileSample]):
    """``StreamingImages`` decoded in the worker; an unreadable file becomes a failure."""

    def __init__(self, images: StreamingImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> FileSample:
        try:
            pixels, label = self.images[index]
        except CorruptImageError as error:
            return FileSample(index, None, self.images.labels[index], str(error))
        return FileSample(index, pixels, label)


class _RawFiles(Dataset[FileSample]):
    """Each file's bytes as a uint8 tensor, read once without decoding."""

    def __init__(self, images: StreamingImages) -> None:
        self.paths, self.labels = images.paths, images.labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> FileSample:
        try:
            data = torch.from_numpy(np.fromfile(self.paths[index], dtype=np.uint8))
        except OSError as error:
            return FileSample(index, None, self.labels[index], " ".join(str(error).split()))
        return FileSample(index, data, self.labels[index])


def check_file_loading(decode: str, max_side: int | None, max_bad_fraction: float) -> None:
    """Raise ValueError naming the first of these settings that is not valid."""
    if decode not in DECODE_MODES:
        raise ValueError(f"unknown decode {decode!r}; valid: {', '.join(DECODE_MODES)}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side={max_side}: must be >= 1, or None (twice the image size)")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError(f"max_bad_fraction={max_bad_fraction}: must be in [0, 1]")


def file_samples(images: StreamingImages, decode: str) -> Dataset[FileSample]:
    """The worker-side dataset of ``images`` for the ``decode`` mode (see DECODE_MODES)."""
    check_file_loading(decode, None, 0.0)
    return _RawFiles(images) if decode == "bytes" else _DecodedFiles(images)


def collate_files(samples: Sequence[FileSample]) -> FileBatch:
    """The readable samples as one batch; the others as failures."""
    good = [s for s in samples if s.payload is not None]
    payloads = [s.payload for s in good]
    stacked = bool(payloads) and payloads[0].dim() == 3  # decoded pixels of one size
    return FileBatch(
        torch.stack(payloads) if stacked else payloads,  # type: ignore[arg-type]
        torch.stack([s.label for s in good]) if good else torch.zeros(0, dtype=torch.int64),
        torch.tensor([s.index for s in good], dtype=torch.int64),
        [(s.index, s.failure or "unreadable") for s in samples if s.payload is None],
    )


BatchOnDevice = tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]


class FileBatchFinisher:
    """Turn a worker ``FileBatch`` into (uint8 images, labels[, sizes]) on ``device``.

    Bytes are decoded on the device, whole (``max_side`` caps the longer side), and ``sizes``
    (B, 2) says where each image ends in the padded batch. Unreadable files go to ``bad``. With
    ``fill_to``, a batch that lost samples is topped up with repeats of its first ones, so that
    every rank of a multi-device run gathers the same number of rows, and a batch that lost all
    of them is replaced by the last batch served, so that every rank takes the same number of
    steps (a rank that skipped one would leave the others waiting in the next all-reduce).
    """

    def __init__(
        self,
        paths: Sequence[str],
        device: torch.device,
        bad: BadFiles,
        max_side: int | None = None,
        fill_to: int | None = None,
    ) -> None:
        self.paths, self.device, self.bad = paths, device, bad
        self.max_side, self.fill_to = max_side, fill_to
        self._last: BatchOnDevice | None = None  # with fill_to: what an unreadable batch repeats

    def __call__(self, batch: FileBatch) -> BatchOnDevice | None:
        """The batch on the device; when none of its files could be read, None, or with
        ``fill_to`` the last batch served (None before the first)."""
        failures = list(batch.failures)
        labels = batch.labels
        sizes: Tensor | None = None
        if isinstance(batch.payload, Tensor):
            images = batch.payload.to(self.device, non_blocking=True)
        elif len(labels):  # bytes to decode; none when every file failed in the workers
            decoded = decode_batch(batch.payload, self.device, self.max_side)
            failures += [(int(batch.indices[p]), why) for p, why in decoded.failures]
            images, sizes, labels = decoded.images, decoded.sizes, labels[decoded.kept]
        for index, reason in failures:
            self.bad.add(self.paths[index], reason)
        if len(labels) == 0:
            return self._last if self.fill_to is not None else None
        if self.fill_to is not None and len(labels) < self.fill_to:
            repeat = torch.arange(self.fill_to) % len(labels)
            images, labels = images[repeat.to(images.device)], labels[repeat]
            sizes = None if sizes is None else sizes[repeat]
        labels = labels.to(self.device, non_blocking=True)
        finished = (images, labels) if sizes is None else (images, labels, sizes)
        if self.fill_to is not None:
            self._last = finished
        return finished
