"""InfoNCE and NT-Xent (SimCLR): cross-entropy over cosine-similarity logits."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import TemperatureLoss, check_pair, check_positive, full_precision, normalize
from .distributed import gather_rows, gather_views
from .row_logsumexp import row_logsumexp


@full_precision
def info_nce(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.1,
    symmetric: bool = False,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """Cross-entropy of the cross-view logits u·vᵀ/τ with target i (van den Oord et al., 2018).

    With `symmetric=True` the v→u direction is averaged in, as in CLIP. `chunk_size=k` computes
    the logits k rows at a time, forward and backward, in memory linear in the batch.
    """
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    u, v = normalize(z1), normalize(z2)
    positive = (u * v).sum(dim=1) / temperature
    loss = (
        row_logsumexp(u / temperature, gather_rows(v, gather), None, chunk_size) - positive
    ).mean()
    if symmetric:
        lse_vu = row_logsumexp(v / temperature, gather_rows(u, gather), None, chunk_size)
        loss = (loss + (lse_vu - positive).mean()) / 2
    return loss


@full_precision
def nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """SimCLR's NT-Xent: 2N anchors, each against the 2N−1 other embeddings (Chen et al., 2020).

    `chunk_size=k` computes the logits k rows at a time, in memory linear in the batch.
    """
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    u, v = normalize(z1), normalize(z2)
    candidates, (own_u, own_v) = gather_views([u, v], gather)
    positive = (u * v).sum(dim=1).repeat(2) / temperature
    # Each anchor excludes only its own column.
    own = torch.cat([own_u, own_v])[:, None]
    lse = row_logsumexp(torch.cat([u, v]) / temperature, candidates, own, chunk_size)
    return (lse - positive).mean()


class InfoNCELoss(TemperatureLoss):
    """Module form of :func:`info_nce`."""

    def __init__(
        self,
        temperature: float = 0.1,
        symmetric: bool = False,
        gather: bool = True,
        chunk_size: int | None = None,
    ):
        super().__init__(temperature, gather, chunk_size)
        self.symmetric = symmetric

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return info_nce(z1, z2, self.temperature, self.symmetric, self.gather, self.chunk_size)


class NTXentLoss(TemperatureLoss):
    """Module form of :func:`nt_xent`."""

    def __init__(
        self, temperature: float = 0.5, gather: bool = True, chunk_size: int | None = None
    ):
        super().__init__(temperature, gather, chunk_size)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return nt_xent(z1, z2, self.temperature, self.gather, self.chunk_size)


__all__ = ["InfoNCELoss", "NTXentLoss", "info_nce", "nt_xent"]
