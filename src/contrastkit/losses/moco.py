"""MoCo v2 (Chen et al., 2020) with a queue of negatives, and MoCo v3 (Chen, Xie & He, 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import (
    TemperatureLoss,
    check_embeddings,
    check_pair,
    check_positive,
    full_precision,
    normalize,
)
from .distributed import gather_no_grad
from .row_logsumexp import row_logsumexp


@full_precision
def moco(
    q: Tensor,
    k: Tensor,
    queue: Tensor | None = None,
    temperature: float = 0.2,
    gather: bool = True,
) -> Tensor:
    """−log(e^{q·k/τ} / (e^{q·k/τ} + Σ_{u∈queue} e^{q·u/τ})) on unit rows, mean over the batch.

    Each query's negatives are the queue's rows only (MoCo v2): a mean of per-sample terms
    against a queue that is the same on every rank, so `gather` needs no exchange. `queue` is
    (K, D), may be empty or None (then the loss is 0), and is not normalised in place.
    """
    del gather
    check_pair(q, k, min_batch=1, names="q,k")
    check_positive("temperature", temperature)
    u, v = normalize(q), normalize(k)
    positive = (u * v).sum(dim=1) / temperature
    if queue is None or queue.shape[0] == 0:
        return (positive - positive).mean()
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"queue must have shape (size, {q.shape[1]}), got shape {tuple(queue.shape)}"
        )
    # LSE over [q·k, q·queue] = logaddexp(q·k, LSE over the queue): the shared row kernel keeps
    # one N×K block of exponentials instead of the logits, their concatenation and softmax.
    negatives = row_logsumexp(u / temperature, normalize(queue.to(u.dtype)))
    return (torch.logaddexp(positive, negatives) - positive).mean()


@full_precision
def moco_v3(
    q: Tensor,
    k: Tensor,
    temperature: float = 0.2,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """2τ · cross-entropy of q·kᵀ/τ with target i, keys from every rank (MoCo v3's `ctr`).

    The keys come from the momentum encoder: they are gathered without gradient and carry none
    (stop-gradient); the labels are offset by this rank's position in the gathered keys.
    """
    check_pair(q, k, names="q,k")
    check_positive("temperature", temperature)
    u, v = normalize(q), normalize(k.detach())
    keys = gather_no_grad(v, gather)
    positive = (u * v).sum(dim=1) / temperature  # this row's own key among the gathered ones
    lse = row_logsumexp(u / temperature, keys, None, chunk_size)
    return 2 * temperature * (lse - positive).mean()


class MoCoLoss(TemperatureLoss):
    """Module form of :func:`moco`; the method passes the queue's filled rows."""

    def __init__(self, temperature: float = 0.2, gather: bool = True):
        super().__init__(temperature, gather, chunk_size=None)

    def forward(self, q: Tensor, k: Tensor, queue: Tensor | None = None) -> Tensor:
        if queue is not None:
            check_embeddings(queue, "queue", min_batch=0)
        return moco(q, k, queue, self.temperature, self.gather)


class MoCoV3Loss(TemperatureLoss):
    """Module form of :func:`moco_v3`."""

    def __init__(
        self, temperature: float = 0.2, gather: bool = True, chunk_size: int | None = None
    ):
        super().__init__(temperature, gather, chunk_size)

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return moco_v3(q, k, self.temperature, self.gather, self.chunk_size)


__all__ = ["MoCoLoss", "MoCoV3Loss", "moco", "moco_v3"]
