"""Decoupled contrastive learning: DCL, its symmetric form, and DCLW (Yeh et al., 2022).

The positive pair is removed from the denominator of InfoNCE, which removes the
negative-positive coupling that makes InfoNCE need large batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_pair, check_positive, full_precision, index_mask, normalize, own_columns
from .distributed import gather_no_grad, gather_rows, row_offset


def _dcl_anchor_losses(
    u: Tensor,
    v: Tensor,
    u_all: Tensor,
    v_all: Tensor,
    offset: int,
    temperature: float,
    positive_weight: Tensor | None = None,
) -> Tensor:
    """Per-anchor DCL with local anchors u: −w_i·u_i·v_i/τ + LSE_{j≠i}({u_i·v_j, u_i·u_j}/τ)."""
    total = u_all.shape[0]
    own = own_columns(u.shape[0], offset, u.device)
    logits = u @ torch.cat([v_all, u_all]).T / temperature
    excluded = index_mask(own, 2 * total) | index_mask(own + total, 2 * total)
    negatives = torch.logsumexp(logits.masked_fill(excluded, float("-inf")), dim=1)
    positive = (u * v).sum(dim=1) / temperature
    if positive_weight is not None:
        positive = positive * positive_weight
    return negatives - positive


def _both_directions(
    z1: Tensor, z2: Tensor, temperature: float, gather: bool, weight: Tensor | None = None
) -> Tensor:
    """Mean of the two one-sided DCL losses, sharing one gather of each view."""
    u, v = normalize(z1), normalize(z2)
    u_all, v_all = gather_rows(u, gather), gather_rows(v, gather)
    offset = row_offset(u.shape[0], gather)
    forward = _dcl_anchor_losses(u, v, u_all, v_all, offset, temperature, weight)
    backward = _dcl_anchor_losses(v, u, v_all, u_all, offset, temperature, weight)
    return (forward.mean() + backward.mean()) / 2


@full_precision
def dcl(z1: Tensor, z2: Tensor, temperature: float = 0.1, gather: bool = True) -> Tensor:
    """One-sided DCL with anchors from z1: mean_i[−u_i·v_i/τ + LSE_{j≠i}({u_i·v_j, u_i·u_j}/τ)]."""
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    u, v = normalize(z1), normalize(z2)
    u_all, v_all = gather_rows(u, gather), gather_rows(v, gather)
    offset = row_offset(u.shape[0], gather)
    return _dcl_anchor_losses(u, v, u_all, v_all, offset, temperature).mean()


@full_precision
def dcl_symmetric(z1: Tensor, z2: Tensor, temperature: float = 0.1, gather: bool = True) -> Tensor:
    """DCL over all 2N anchors: the mean of both one-sided directions."""
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    return _both_directions(z1, z2, temperature, gather)


@full_precision
def dclw(
    z1: Tensor, z2: Tensor, temperature: float = 0.1, sigma: float = 0.5, gather: bool = True
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
    return _both_directions(z1, z2, temperature, gather, weights)


class DCLLoss(nn.Module):
    """Module form of :func:`dcl`."""

    def __init__(self, temperature: float = 0.1, gather: bool = True):
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature, self.gather = temperature, gather

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return dcl(z1, z2, self.temperature, self.gather)


class DCLSymmetricLoss(DCLLoss):
    """Module form of :func:`dcl_symmetric`."""

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return dcl_symmetric(z1, z2, self.temperature, self.gather)


class DCLWLoss(nn.Module):
    """Module form of :func:`dclw`."""

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5, gather: bool = True):
        super().__init__()
        check_positive("temperature", temperature)
        check_positive("sigma", sigma)
        self.temperature, self.sigma, self.gather = temperature, sigma, gather

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return dclw(z1, z2, self.temperature, self.sigma, self.gather)
