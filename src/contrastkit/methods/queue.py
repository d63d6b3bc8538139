"""A queue (memory bank) of past keys: MoCo's negatives, NNCLR's support set.

Registered buffers, so a checkpoint holds it and `--resume` continues bit for bit. Every rank
pushes the keys of all ranks (gathered without gradient), so the queue is the same everywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..losses.distributed import gather_no_grad


class Queue(nn.Module):
    """`count` ring buffers of `size` rows of `dim` features (one per view that feeds it), and
    the label of each row (−1 when unknown), written oldest-first.

    Any size works, not only a multiple of the global batch: a push wraps around the end, and a
    push of more rows than `size` keeps the newest. Only filled rows are ever read.
    """

    keys: Tensor
    labels: Tensor
    pointer: Tensor
    filled: Tensor

    def __init__(self, size: int, dim: int, count: int = 1) -> None:
        super().__init__()
        for name, value in (("queue size", size), ("dim", dim), ("count", count)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.size = size
        self.register_buffer("keys", torch.zeros(count, size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def rows(self, index: int = 0) -> Tensor:
        """The filled rows of buffer `index` (detached), in storage order."""
        return self.keys[index, : int(self.filled)].detach()

    def row_labels(self) -> Tensor:
        """The labels of the filled rows, −1 where unknown."""
        return self.labels[: int(self.filled)]

    @torch.no_grad()
    def push(self, keys: Tensor, labels: Tensor | None = None) -> None:
        """Append this step's keys, (count, B, dim) per rank, from every rank in rank order."""
        if keys.ndim != 3 or keys.shape[0] != self.keys.shape[0]:
            raise ValueError(
                f"keys must have shape ({self.keys.shape[0]}, batch, dim), got {tuple(keys.shape)}"
            )
        keys = gather_no_grad(keys.transpose(0, 1)).transpose(0, 1)
        if labels is None:
            labels = torch.full((keys.shape[1],), -1, dtype=torch.long, device=keys.device)
        else:
            labels = gather_no_grad(labels)
        n = keys.shape[1]
        start = int(self.pointer)
        if n > self.size:  # only the newest `size` rows survive; the older ones are skipped
            start = (start + n - self.size) % self.size
            keys, labels, n = keys[:, -self.size :], labels[-self.size :], self.size
        index = (start + torch.arange(n, device=keys.device)) % self.size
        self.keys[:, index] = keys.to(self.keys.dtype)
        self.labels[index] = labels.to(self.labels.device)
        self.pointer.fill_((start + n) % self.size)
        self.filled.fill_(min(int(self.filled) + n, self.size))
