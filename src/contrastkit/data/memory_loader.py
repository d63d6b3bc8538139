"""Shuffled batches served straight from image tensors that already live on the device.

Small datasets fit on the GPU as uint8, where indexing a batch costs microseconds; this
replaces a DataLoader (worker processes, collation, host-to-device copies) for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


class DeviceBatches:
    """Iterate ``(images[idx], labels[idx])`` batches over a fresh permutation each epoch.

    The permutation depends only on (seed, epoch), the seed being ``generator``'s initial seed
    (0 without one), so every rank of a distributed job draws the same permutation and takes its
    own strided shard of it: shards are disjoint and all ranks get the same number of batches.
    With ``drop_last`` the samples that do not fill a batch on every rank are skipped; without
    it the permutation wraps around to pad the shards, as ``DistributedSampler`` does.

    Each ``iter()`` uses the current epoch and then advances it, so the order changes every
    epoch even when ``set_epoch`` is never called; calling it pins the epoch explicitly.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = generator.initial_seed() if generator is not None else 0
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s permutation for the next iteration."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self._per_rank() / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.indices(self.epoch)
        self.epoch += 1
        return self._batches(order)

    def indices(self, epoch: int) -> Tensor:
        """This rank's sample indices for ``epoch``, in the order they are served."""
        n = len(self.images)
        if self.shuffle:
            # SeedSequence mixes (seed, epoch) so nearby seeds and epochs give unrelated streams.
            mixed = np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(mixed))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self._per_rank() * self.world_size
        if total > n:
            order = order.repeat(math.ceil(total / n))
        return order[self.rank : total : self.world_size]

    def _per_rank(self) -> int:
        n = len(self.images)
        if self.drop_last:
            return n // (self.batch_size * self.world_size) * self.batch_size
        return math.ceil(n / self.world_size)

    def _batches(self, order: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        image_order = order.to(self.images.device)
        label_order = order.to(self.labels.device)
        for start in range(0, len(order), self.batch_size):
            end = start + self.batch_size
            yield self.images[image_order[start:end]], self.labels[label_order[start:end]]
