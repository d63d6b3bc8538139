"""Alignment and uniformity of embeddings on the sphere (Wang & Isola, 2020)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._common import check_embeddings, check_pair, check_positive, full_precision, normalize
from .distributed import gather_rows
from .row_logsumexp import check_chunk_size, row_logsumexp


@full_precision
def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0, gather: bool = True) -> Tensor:
    """mean_i ‖u_i − v_i‖^α, with ‖u − v‖² = 2 − 2u·v on the sphere.

    A mean of per-pair terms: the mean over ranks already equals the global value, so `gather`
    needs no exchange.
    """
    del gather
    check_pair(z1, z2, min_batch=1)
    check_positive("alpha", alpha)
    squared = (2 - 2 * (normalize(z1) * normalize(z2)).sum(dim=1)).clamp_min(0)
    return squared.pow(alpha / 2).mean()


@full_precision
def uniformity(
    z: Tensor, t: float = 2.0, gather: bool = True, chunk_size: int | None = None
) -> Tensor:
    """log mean_{i≠j} exp(−t‖u_i − u_j‖²) over all pairs of the (gathered) batch.

    The log of a mean does not split over ranks, so every rank computes it on the whole batch.
    −t‖u_i − u_j‖² = 2t·u_i·u_j − 2t, so it is a log-sum-exp of row log-sum-exps;
    `chunk_size=k` computes them k rows at a time, in memory linear in the batch.
    """
    check_embeddings(z, "z")
    check_positive("t", t)
    u = normalize(gather_rows(z, gather))
    n = u.shape[0]
    diagonal = torch.arange(n, device=u.device)[:, None]
    row_lse = row_logsumexp(2 * t * u, u, diagonal, chunk_size)
    return torch.logsumexp(row_lse, dim=0) - 2 * t - math.log(n * (n - 1))


class AlignmentLoss(nn.Module):
    """Module form of :func:`alignment`."""

    def __init__(self, alpha: float = 2.0, gather: bool = True):
        super().__init__()
        check_positive("alpha", alpha)
        self.alpha, self.gather = alpha, gather

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return alignment(z1, z2, self.alpha, self.gather)


class UniformityLoss(nn.Module):
    """Module form of :func:`uniformity`."""

    def __init__(self, t: float = 2.0, gather: bool = True, chunk_size: int | None = None):
        super().__init__()
        check_positive("t", t)
        check_chunk_size(chunk_size)
        self.t, self.gather, self.chunk_size = t, gather, chunk_size

    def forward(self, z: Tensor) -> Tensor:
        return uniformity(z, self.t, self.gather, self.chunk_size)
