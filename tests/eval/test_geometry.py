"""Effective rank, alignment and uniformity against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.eval import alignment_uniformity, effective_rank


def _orthonormal_rows(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, n, generator=torch.Generator().manual_seed(seed)))
    return q.T  # (n, dim) with orthonormal rows


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_effective_rank_of_orthonormal_features_is_their_count(k: int) -> None:
    assert effective_rank(_orthonormal_rows(k, 32)) == pytest.approx(k, rel=1e-9)
    # Embedded in more samples: k orthonormal directions, each with equal energy.
    tiled = _orthonormal_rows(k, 32).repeat(3, 1)
    assert effective_rank(tiled) == pytest.approx(k, rel=1e-9)


def test_effective_rank_of_rank_one_features_is_one() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(100, 1, generator=generator) @ torch.randn(1, 64, generator=generator)
    assert effective_rank(features) == pytest.approx(1.0, abs=1e-5)


def test_effective_rank_of_unequal_spectrum_and_of_zeros() -> None:
    # Singular values 3 and 1: p = (3/4, 1/4), erank = exp(H(p)).
    features = torch.diag(torch.tensor([3.0, 1.0]))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(features) == pytest.approx(math.exp(entropy), rel=1e-9)
    assert effective_rank(torch.zeros(4, 3)) == 0.0


def test_identical_views_are_perfectly_aligned() -> None:
    z = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    result = alignment_uniformity(z, 3 * z, z)  # scale does not matter on the sphere
    assert result["alignment"] == pytest.approx(0.0, abs=1e-6)


def test_antipodal_and_orthogonal_views_have_closed_form_alignment() -> None:
    z = _orthonormal_rows(6, 6)
    assert alignment_uniformity(z, -z, z)["alignment"] == pytest.approx(4.0, abs=1e-5)
    assert alignment_uniformity(z, z.roll(1, 0), z)["alignment"] == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("n", [2, 4, 9])
def test_uniformity_of_orthonormal_and_simplex_points(n: int) -> None:
    # Orthonormal points are all at squared distance 2: log exp(-2 * 2) = -4.
    points = _orthonormal_rows(n, 16)
    assert alignment_uniformity(points, points, points)["uniformity"] == pytest.approx(-4.0)
    # A regular simplex (centred orthonormal points) has cosines -1/(n-1) between vertices.
    simplex = points - points.mean(dim=0)
    distance = 2 + 2 / (n - 1)
    expected = -2 * distance
    assert alignment_uniformity(points, points, simplex)["uniformity"] == pytest.approx(
        expected, abs=1e-5
    )
