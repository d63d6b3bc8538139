"""The effective rank of features against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.methods.monitor import FeatureRank


def rank_of(*batches: torch.Tensor) -> float | None:
    monitor = FeatureRank()
    for batch in batches:
        monitor.add(batch)
    return monitor.effective_rank()


def test_equal_variance_in_every_direction_gives_the_dimension() -> None:
    """±e_k rows: covariance I/4·…, all eigenvalues equal: rank = D, over several batches."""
    eye = torch.eye(4)
    assert rank_of(eye, -eye) == pytest.approx(4.0, rel=1e-9)


def test_two_directions_with_variances_one_and_three() -> None:
    x = torch.tensor([[1.0, 3.0**0.5], [-1.0, -(3.0**0.5)], [1.0, -(3.0**0.5)], [-1.0, 3.0**0.5]])
    p = torch.tensor([0.25, 0.75])
    assert rank_of(x) == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-6)


def test_collapsed_features_have_rank_one_and_one_row_has_none() -> None:
    line = torch.randn(50, 1) * torch.tensor([[1.0, 2.0, -1.0]])
    assert rank_of(line) == pytest.approx(1.0, abs=1e-6)
    assert rank_of(torch.ones(5, 3)) == 1.0
    assert rank_of(torch.randn(1, 3)) is None
