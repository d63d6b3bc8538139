"""Barlow Twins (Zbontar et al., 2021): drive the cross-correlation matrix to the identity."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_non_negative, check_pair, full_precision
from .distributed import gather_rows

_BN_EPS = 1e-5


def _standardize(z: Tensor) -> Tensor:
    """Per-dimension standardisation over the batch, as BatchNorm1d(affine=False) in training."""
    mean = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False)
    return (z - mean) / torch.sqrt(var + _BN_EPS)


@full_precision
def barlow_twins_terms(z1: Tensor, z2: Tensor, gather: bool = True) -> dict[str, Tensor]:
    """Unweighted terms: Σ(1 − C_ii)² (`on_diagonal`) and Σ_{i≠j} C_ij² (`off_diagonal`).

    C = z1ᵀz2 / N over the whole (gathered) batch, so every rank computes the same matrix.
    """
    check_pair(z1, z2)
    a, b = _standardize(gather_rows(z1, gather)), _standardize(gather_rows(z2, gather))
    c = a.T @ b / a.shape[0]
    diagonal = torch.diagonal(c)
    return {
        "on_diagonal": (1 - diagonal).pow(2).sum(),
        "off_diagonal": c.pow(2).sum() - diagonal.pow(2).sum(),
    }


def barlow_twins(z1: Tensor, z2: Tensor, lambd: float = 5e-3, gather: bool = True) -> Tensor:
    """Σ(1 − C_ii)² + λ·Σ_{i≠j} C_ij², with no extra scale."""
    check_non_negative("lambd", lambd)
    terms = barlow_twins_terms(z1, z2, gather)
    return terms["on_diagonal"] + lambd * terms["off_diagonal"]


class BarlowTwinsLoss(nn.Module):
    """Module form of :func:`barlow_twins`; `components` holds the last call's unweighted terms."""

    def __init__(self, lambd: float = 5e-3, gather: bool = True):
        super().__init__()
        check_non_negative("lambd", lambd)
        self.lambd, self.gather = lambd, gather
        self.components: dict[str, Tensor] = {}

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        terms = barlow_twins_terms(z1, z2, self.gather)
        self.components = {k: v.detach() for k, v in terms.items()}
        return terms["on_diagonal"] + self.lambd * terms["off_diagonal"]
