"""RankMe and α-ReQ: closed forms, a numpy reference, and the per-epoch pretraining log."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data import holdout_split
from contrastkit.eval import extract_features, load_encoder
from contrastkit.spectrum import alpha_req, rankme


def _orthonormal_centred(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(raw - raw.mean(dim=0))
    return q


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_rankme_of_equal_singular_values_is_their_count(rank: int) -> None:
    q = _orthonormal_centred(40, 8)
    features = q * torch.tensor([3.0] * rank + [0.0] * (8 - rank), dtype=torch.float64)
    # p = 1/rank + ε on `rank` values and ε on the remaining 8 - rank (ε = 1e-7)
    p = np.array([1 / rank + 1e-7] * rank + [1e-7] * (8 - rank))
    assert rankme(features) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert rankme(features) == pytest.approx(rank, rel=1e-4)  # ε moves it by ~1e-5


def test_rankme_equals_a_numpy_reference() -> None:
    features = torch.randn(30, 12, generator=torch.Generator().manual_seed(1))
    sigma = np.linalg.svd(features.double().numpy(), compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    assert rankme(features) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.5])
def test_alpha_req_recovers_a_power_law(alpha: float) -> None:
    dims = 10
    eigen = np.arange(1, dims + 1) ** -alpha
    features = _orthonormal_centred(200, dims) * torch.from_numpy(np.sqrt(eigen * 199))
    assert alpha_req(features) == pytest.approx(alpha, rel=1e-6)
    shifted = features + 5.0  # a constant offset does not change the covariance
    assert alpha_req(shifted) == pytest.approx(alpha, rel=1e-6)


def test_alpha_req_equals_a_numpy_fit() -> None:
    features = torch.randn(50, 6, generator=torch.Generator().manual_seed(2)) @ torch.randn(
        6, 6, generator=torch.Generator().manual_seed(3)
    )
    eigen = np.sort(np.linalg.eigvalsh(np.cov(features.double().numpy(), rowvar=False)))[::-1]
    slope = np.polyfit(np.log(np.arange(1, 7)), np.log(eigen), 1)[0]
    assert alpha_req(features) == pytest.approx(-slope, rel=1e-6)


def test_pretraining_logs_the_spectrum_of_the_probe_split_each_epoch(checkpoint: Path) -> None:
    with open(checkpoint.parent / "logs" / "metrics.csv", newline="") as handle:
        logged = [r for r in csv.DictReader(handle) if r.get("val/rankme")]
    assert len(logged) == 1  # one epoch
    encoder = load_encoder(str(checkpoint))
    features, labels = extract_features(encoder, "train", "backbone")
    _, probe = holdout_split(labels, 0.1)
    assert float(logged[0]["val/rankme"]) == pytest.approx(rankme(features[probe]), rel=1e-4)
    assert float(logged[0]["val/alpha_req"]) == pytest.approx(alpha_req(features[probe]), rel=1e-3)
