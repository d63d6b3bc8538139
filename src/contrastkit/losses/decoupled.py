"""Decoupled contrastive learning: DCL, its symmetric form, and DCLW (Yeh et al., 2022).

The positive pair is removed from the denominator of InfoNCE, which removes the
negative-positive coupling that makes InfoNCE need large batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import TemperatureLoss, check_pair, check_positive, full_precision, normalize
from .distributed import gather_no_grad, gather_views, row_offset
from .row_logsumexp import row_logsumexp


def _decoupled(
    z1: Tensor,
    z2: Tensor,
    temperature: float,
    gather: bool,
    both_directions: bool,
    chunk_size: int | None,
    positive_weight: Tensor | None = None,
) -> Tensor:
    """mean over anchors of −w_i·a_i·b_i/τ + LSE_{j≠i}({a_i·v_j, a_i·u_j}/τ).

    The anchors are u (one-sided) or u and v (both directions); every anchor sees the gathered
    u and v except the two embeddings of its own sample.
    """
    u, v = normalize(z1), normalize(z2)
    candidates, own = gather_views([u, v], gather)
    excluded = torch.stack(own, dim=1)
    positive = (u * v).sum(dim=1) / temperature
    if positive_weight is not None:
        positive = positive * positive_weight
    anchors = u
    if both_directions:
        anchors, excluded, positive = torch.cat([u, v]), excluded.repeat(2, 1), positive.repeat(2)
    lse = row_logsumexp(anchors / temperature, candidates, excluded, chunk_size)
    return (lse - positive).mean()


@full_precision
def dcl(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.1,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """One-sided DCL with anchors from z1: mean_i[−u_i·v_i/τ + LSE_{j≠i}({u_i·v_j, u_i·u_j}/τ)].

    `chunk_size=k` computes the logits k rows at a time, in memory linear in the batch.
    """
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    return _decoupled(z1, z2, temperature, gather, False, chunk_size)


@full_precision
def dcl_symmetric(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.1,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """DCL over all 2N anchors: the mean of both one-sided directions."""
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    return _decoupled(z1, z2, temperature, gather, True, chunk_size)


@full_precision
def dclw(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.1,
    sigma: float = 0.5,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """Weighted DCL: the positive term scaled by w_i = 2 − N·softmax_i(u_i·v_i/σ), without gradient.

    Harder positives (lower similarity) get larger weights; N and the softmax span the whole
    (gathered) batch.
    """
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    check_positive("sigma", sigma)
    with torch.no_grad():
        similarity = gather_no_grad((normalize(z1) * normalize(z2)).sum(dim=1), gather)
        weights_all = 2 - similarity.shape[0] * F.softmax(similarity / sigma, dim=0)
        offset = row_offset(z1.shape[0], gather)
        weights = weights_all[offset : offset + z1.shape[0]]
    return _decoupled(z1, z2, temperature, gather, True, chunk_size, weights)


class DCLLoss(TemperatureLoss):
    """Module form of :func:`dcl`."""

    def __init__(
        self, temperature: float = 0.1, gather: bool = True, chunk_size: int | None = None
    ):
        super().__init__(temperature, gather, chunk_size)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return dcl(z1, z2, self.temperature, self.gather, self.chunk_size)


class DCLSymmetricLoss(DCLLoss):
    """Module form of :func:`dcl_symmetric`."""

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return dcl_symmetric(z1, z2, self.temperature, self.gather, self.chunk_size)


class DCLWLoss(TemperatureLoss):
    """Module form of :func:`dclw`."""

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: float = 0.5,
        gather: bool = True,
        chunk_size: int | None = None,
    ):
        super().__init__(temperature, gather, chunk_size)
        check_positive("sigma", sigma)
        self.sigma = sigma

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return dclw(z1, z2, self.temperature, self.sigma, self.gather, self.chunk_size)
