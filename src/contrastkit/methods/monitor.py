"""Collapse monitor: the effective rank of the features a method produces over an epoch."""

from __future__ import annotations

import torch
from torch import Tensor


class FeatureRank:
    """Running first and second moments of feature rows (float64), and their effective rank.

    The effective rank (Roy & Vetterli, 2007) is exp of the entropy of the covariance's
    normalised eigenvalues: the feature dimension when all directions carry equal variance,
    1 when the features vary along one direction only (dimensional collapse).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count, self.total, self.gram = 0, None, None

    @torch.no_grad()
    def add(self, features: Tensor) -> None:
        x = features.detach().double()
        if self.total is None:
            self.total = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
            self.gram = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.gram.addmm_(x.T, x)

    def effective_rank(self) -> float | None:
        """exp(−Σ p log p) over p = λ / Σλ of the covariance; None before two rows."""
        if self.count < 2:
            return None
        mean = self.total / self.count
        covariance = self.gram / self.count - torch.outer(mean, mean)
        eigenvalues = torch.linalg.eigvalsh(covariance).clamp_min(0)
        if eigenvalues.sum() <= 0:
            return 1.0
        p = eigenvalues / eigenvalues.sum()
        p = p[p > 0]
        return float(torch.exp(-(p * p.log()).sum()))
