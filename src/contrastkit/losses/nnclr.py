"""NNCLR (Dwibedi et al., 2021): the nearest neighbour from a support set replaces the anchor."""

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
from .distributed import gather_rows
from .row_logsumexp import row_logsumexp


def nearest_neighbour_index(z: Tensor, support: Tensor) -> Tensor:
    """Index of each row's nearest support row by cosine similarity, shape (N,)."""
    with torch.no_grad():
        return (normalize(z.float()) @ normalize(support.float()).T).argmax(dim=1)


@full_precision
def nnclr(
    z: Tensor,
    p: Tensor,
    support: Tensor | None = None,
    temperature: float = 0.1,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """InfoNCE of sg(NN(z)) against the other view's predictions p, gathered with gradient.

    NN(z_i) is the support row nearest to z_i (cosine); it carries no gradient, so only p is
    trained through this term. Row i's positive is p_i, found at column offset + i of the
    predictions of all ranks. An empty or missing support set uses z itself (training's first
    step, before the support queue holds anything).
    """
    check_pair(z, p, names="z,p")
    check_positive("temperature", temperature)
    if support is None or support.shape[0] == 0:
        anchors = z.detach()
    else:
        check_embeddings(support, "support", min_batch=1)
        if support.shape[1] != z.shape[1]:
            raise ValueError(
                f"support must have shape (size, {z.shape[1]}), got shape {tuple(support.shape)}"
            )
        anchors = support.to(z.dtype)[nearest_neighbour_index(z, support)].detach()
    u, v = normalize(anchors), normalize(p)
    positive = (u * v).sum(dim=1) / temperature
    lse = row_logsumexp(u / temperature, gather_rows(v, gather), None, chunk_size)
    return (lse - positive).mean()


class NNCLRLoss(TemperatureLoss):
    """Module form of :func:`nnclr`; the method passes its support queue's filled rows."""

    def __init__(
        self, temperature: float = 0.1, gather: bool = True, chunk_size: int | None = None
    ):
        super().__init__(temperature, gather, chunk_size)

    def forward(self, z: Tensor, p: Tensor, support: Tensor | None = None) -> Tensor:
        return nnclr(z, p, support, self.temperature, self.gather, self.chunk_size)


__all__ = ["NNCLRLoss", "nearest_neighbour_index", "nnclr"]
