"""Geometry of a representation: alignment and uniformity on the sphere (Wang & Isola 2020) and
the effective rank (Roy & Vetterli 2007), which tells dimensional collapse apart."""

from __future__ import annotations

import torch
from torch import Tensor

from ..losses import alignment, uniformity


def effective_rank(features: Tensor) -> float:
    """exp of the Shannon entropy of the singular values of `features` (N, F), normalised to sum
    to 1: k for k equal non-zero singular values, 1 for a rank-1 matrix, 0 for all zeros."""
    singular = torch.linalg.svdvals(features.double())
    total = singular.sum()
    if total == 0:
        return 0.0
    p = singular / total
    return float(torch.exp(-torch.special.xlogy(p, p).sum()))


def alignment_uniformity(view_a: Tensor, view_b: Tensor, features: Tensor) -> dict[str, float]:
    """`alignment`: mean squared distance between L2-normalised positive pairs (rows of the two
    views; 0 is perfect); `uniformity`: log of the mean Gaussian potential exp(-2‖u - v‖²) over
    pairs of L2-normalised `features` (lower is more uniform)."""
    return {
        "alignment": float(alignment(view_a.float(), view_b.float(), gather=False)),
        "uniformity": float(uniformity(features.float(), gather=False)),
    }
