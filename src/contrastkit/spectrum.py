"""Label-free quality of a representation read off its spectrum: RankMe (Garrido et al. 2023)
and α-ReQ (Agrawal et al. 2022). Pure functions over a (N, F) feature matrix, shared by the
pretraining monitor and the metrics protocol."""

from __future__ import annotations

import torch
from torch import Tensor

RANKME_EPS = 1e-7
"""RankMe's ε, added to each normalised singular value before the entropy."""


def rankme(features: Tensor, eps: float = RANKME_EPS) -> float:
    """exp of the entropy of p_k = σ_k / ‖σ‖₁ + ε over the singular values σ of `features`.

    Between 1 (rank one) and min(N, F) (a flat spectrum); 0 for an all-zero matrix.
    """
    singular = torch.linalg.svdvals(features.double())
    total = singular.sum()
    if total == 0:
        return 0.0
    p = singular / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


def alpha_req(features: Tensor, floor: float = 1e-12) -> float:
    """α of the power law λ_i ∝ i^(-α) fitted by least squares to log λ against log i, over the
    eigenvalues λ_1 ≥ λ_2 ≥ … of the centred features' covariance.

    Eigenvalues below `floor` × the largest are left out (numerical zeros); NaN when fewer than
    two remain. A larger α is a faster-decaying spectrum (fewer dimensions in use).
    """
    centred = features.double() - features.double().mean(dim=0)
    eigen = torch.linalg.svdvals(centred).square() / max(1, features.shape[0] - 1)
    kept = eigen[eigen > floor * eigen.max()] if eigen.numel() and eigen.max() > 0 else eigen[:0]
    if kept.numel() < 2:
        return float("nan")
    x = torch.arange(1, kept.numel() + 1, dtype=torch.float64).log()
    y = kept.log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum()
    return float(-slope)
