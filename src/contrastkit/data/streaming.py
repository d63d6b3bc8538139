"""A split stored as shards, read through LitData's StreamingDataset and StreamingDataLoader.

Workers hand over each sample as folder streaming hands over a file (``FileSample``, by
``decode``): its raw bytes, decoded on the training device as one batch; or pixels decoded in
the worker with the same resize and centre crop to ``image_size``; or, for a sample that cannot
be decoded, the reason, so one broken sample never ends an epoch. Batches are ``FileBatch``es,
finished on the device by the same ``FileBatchFinisher`` as folders'; a bad sample is named
``<source>#<index>`` (``ShardImages.names``). Each rank reads its own part of every epoch, the
same number of batches on every rank (drop_last), and the loader's position after any batch can
be saved and restored: a resumed run continues mid-epoch with the samples an uninterrupted run
would have seen.
"""

from __future__ import annotations

import functools
import io
import itertools
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .datasets import CorruptImageError, _decode, _one_line
from .file_loader import FileSample, check_file_loading, collate_files
from .shards import ShardSplit, is_url, read_split, split_folder

_IN_MEMORY = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>")  # PIL names the buffer
_KEPT_POSITIONS = 8  # loader states kept: the trainer prefetches batches ahead of its step


def decode_sample(sample: Mapping[str, Any], image_size: int | None) -> tuple[Tensor, Tensor]:
    """One stored sample as (uint8 (3, H, W) image, int64 label), decoded as folder files are."""
    try:
        image = _decode(io.BytesIO(bytes(sample["image"])), image_size)
    except CorruptImageError as error:
        reason = _IN_MEMORY.sub("", _one_line(error).split(": ", 1)[-1])
        raise CorruptImageError(
            f"cannot decode image {sample['index']} of the shards: {reason}"
        ) from None
    return torch.from_numpy(np.ascontiguousarray(image)), torch.tensor(sample["label"])


def shard_sample(sample: Mapping[str, Any], image_size: int | None, decode: str) -> FileSample:
    """One stored sample as a worker hands it over: its bytes (``decode="bytes"``), or decoded
    as folder files are (``"pil"``), or, when that fails, the reason; it never raises."""
    index, label = int(sample["index"]), torch.tensor(sample["label"])
    if decode == "bytes":
        data = np.frombuffer(bytes(sample["image"]), dtype=np.uint8).copy()
        return FileSample(index, torch.from_numpy(data), label)
    try:
        pixels, _ = decode_sample(sample, image_size)
    except CorruptImageError as error:
        return FileSample(index, None, label, str(error))
    return FileSample(index, pixels, label)


class ShardNames(Sequence[str]):
    """``<source>#<index>`` of each stored sample: how the log and checkpoint name a bad one."""

    def __init__(self, source: str, count: int) -> None:
        self.source, self.count = source, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if not -self.count <= index < self.count:
            raise IndexError(f"sample {index} of {self.count}")
        return f"{self.source}#{index % self.count}"


class ShardImages:
    """A split's shards: its length, classes and samples by index, and resumable batches.

    ``source`` is the split's LitData folder or object-store URL; ``cache_dir`` is where LitData
    keeps the chunks it downloads from a URL.
    """

    def __init__(self, split: ShardSplit, image_size: int | None, cache_dir: Path) -> None:
        self.source = split.source
        self.classes = split.classes
        self.count = split.count
        self.image_size = image_size
        self.cache_dir = cache_dir
        self._reader = None  # a dataset for reads by index, opened on first use

    def __len__(self) -> int:
        return self.count

    @property
    def names(self) -> ShardNames:
        """Each sample's name, ``<source>#<index>``, as folders name theirs by path."""
        return ShardNames(self.source, self.count)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Sample `index` decoded as folder files are; CorruptImageError when it cannot be."""
        if self._reader is None:
            reader = functools.partial(decode_sample, image_size=self.image_size)
            self._reader = self._dataset(shuffle=False, seed=0, transform=reader)
        return self._reader[index]

    def dataset(self, shuffle: bool, seed: int, decode: str):
        """A StreamingDataset of ``FileSample``s as `decode` says (see ``shard_sample``); it
        splits itself between the ranks of the process group (when there is one), so build it
        after the group is up."""
        check_file_loading(decode, None, 0.0)
        transform = functools.partial(shard_sample, image_size=self.image_size, decode=decode)
        return self._dataset(shuffle, seed, transform)

    def _dataset(self, shuffle: bool, seed: int, transform: Callable[[Mapping[str, Any]], Any]):
        from litdata import StreamingDataset

        return StreamingDataset(
            self.source,
            cache_dir=str(self.cache_dir / "litdata") if is_url(self.source) else None,
            shuffle=shuffle,
            drop_last=shuffle,  # training: equal batches on every rank
            seed=seed,
            transform=transform,
        )

    def batches(
        self,
        batch_size: int,
        workers: int,
        shuffle: bool,
        seed: int,
        decode: str = "pil",
        pin_memory: bool = False,
    ) -> ShardBatches:
        """``FileBatch``es of this rank's part of each epoch, through a StreamingDataLoader."""
        from litdata import StreamingDataLoader

        loader = StreamingDataLoader(
            self.dataset(shuffle, seed, decode),
            batch_size=batch_size,
            num_workers=workers,
            drop_last=shuffle,
            pin_memory=pin_memory,
            persistent_workers=False,  # a resumed position restarts the workers
            collate_fn=collate_files,
        )
        return ShardBatches(loader)


class ShardBatches:
    """One epoch of a StreamingDataLoader at a time, remembering its state after each batch.

    ``epoch(e)`` iterates epoch ``e`` (LitData's shuffle is chosen by seed and epoch), or, after
    ``resume(state, batches)``, the rest of the epoch that state was saved in.
    """

    def __init__(self, loader) -> None:
        self.loader = loader
        self._states: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._resume: tuple[dict[str, Any] | None, int] | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def resume(self, state: dict[str, Any] | None, batches: int) -> None:
        """Continue, at the next iteration, after the epoch's first `batches` batches, from the
        loader `state` that :meth:`position` gave then (None: reading the batches again)."""
        self._resume = state, batches

    def position(self, batches: int) -> dict[str, Any] | None:
        """The loader's state after the epoch's first `batches` batches, if still kept."""
        return self._states.get(batches)

    def epoch(self, epoch: int) -> Iterator[Any]:
        state, done = self._resume if self._resume is not None else (None, 0)
        self._resume = None
        if state is not None:
            self.loader.load_state_dict(state)
            skip = 0
        else:  # a fresh epoch, or a position saved without the loader's state: read past it
            self.loader.current_epoch = epoch  # the loader counts one up as it starts
            skip = done
        self._states.clear()
        for batch in itertools.islice(self.loader, skip, None):
            done += 1
            self._states[done] = self.loader.state_dict()
            while len(self._states) > _KEPT_POSITIONS:
                self._states.popitem(last=False)
            yield batch


def load_shard_split(
    data_dir: str, split: str, cache_dir: Path, image_size: int | None
) -> ShardImages:
    """`split` (train or test) of the shards at `data_dir`, decoded at `image_size`."""
    return ShardImages(read_split(split_folder(data_dir, split), cache_dir), image_size, cache_dir)
