"""`chunk_size=` gives the dense loss and gradients, in memory linear in the batch.

The dense forms are checked against naive references in test_contrastive.py; here every chunked
form is checked against its dense form in float64 (1e-10), for chunk sizes that divide the batch,
leave a ragged last block, are a single row, or exceed the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from benchmarks.measure import cpu_peak_bytes
from torch import Tensor

import contrastkit.losses as L
from contrastkit.losses.row_logsumexp import row_logsumexp

N, D = 13, 6
CHUNKS = (1, 4, 13, 50)
# Learnable in training: the chunked forms must pass their gradients through too (checked below).
SCALE = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
BIAS = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
LABELS = torch.tensor([0, 1, 0, 2, 1, 0, 3, 3, 2, 0, 4, 1, 5])

ChunkedLoss = Callable[[Tensor, Tensor, int | None], Tensor]

CASES: dict[str, ChunkedLoss] = {
    "info_nce": lambda a, b, c: L.info_nce(a, b, 0.2, chunk_size=c),
    "info_nce_symmetric": lambda a, b, c: L.info_nce(a, b, 0.2, symmetric=True, chunk_size=c),
    "nt_xent": lambda a, b, c: L.nt_xent(a, b, 0.3, chunk_size=c),
    "dcl": lambda a, b, c: L.dcl(a, b, 0.1, chunk_size=c),
    "dcl_symmetric": lambda a, b, c: L.dcl_symmetric(a, b, 0.1, chunk_size=c),
    "dclw": lambda a, b, c: L.dclw(a, b, 0.1, sigma=0.5, chunk_size=c),
    "dhel_both_views": lambda a, b, c: L.dhel(a, b, 0.3, both_views=True, chunk_size=c),
    "supcon_labels": lambda a, b, c: L.supcon(torch.stack([a, b], 1), LABELS, chunk_size=c),
    "supcon_unlabelled": lambda a, b, c: L.supcon(torch.stack([a, b], 1), chunk_size=c),
    "uniformity": lambda a, b, c: L.uniformity(torch.cat([a, b]), t=2.0, chunk_size=c),
    "kcl": lambda a, b, c: L.kcl(a, b, t=2.0, gamma=16.0, chunk_size=c),
    "sigmoid": lambda a, b, c: L.sigmoid(a, b, SCALE, BIAS, chunk_size=c),
    "sigmoid_modulated_kl": lambda a, b, c: L.sigmoid(
        a, b, SCALE, BIAS, gamma=1.5, kl_weight=0.7, chunk_size=c
    ),
}


def views(seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(N, D, generator=g, dtype=torch.float64).requires_grad_(True) for _ in range(2)
    )


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("name", CASES)
def test_chunked_equals_dense_in_float64(name: str, chunk: int) -> None:
    z1, z2 = views(seed=len(name) + chunk)
    wrt = (z1, z2, SCALE, BIAS) if name.startswith("sigmoid") else (z1, z2)
    dense = CASES[name](z1, z2, None)
    dense_grads = torch.autograd.grad(dense, wrt)
    chunked = CASES[name](z1, z2, chunk)
    chunked_grads = torch.autograd.grad(chunked, wrt)
    torch.testing.assert_close(chunked, dense, rtol=1e-10, atol=1e-10)
    for got, expected in zip(chunked_grads, dense_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk", (None, 3))
def test_row_logsumexp_matches_masked_logsumexp(chunk: int | None) -> None:
    """The primitive against torch.logsumexp on an explicitly masked matrix, with a weighted
    upstream gradient so each row's weight enters the backward."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    excluded = torch.randint(0, 9, (7, 2), generator=g)
    upstream = torch.randn(7, generator=g, dtype=torch.float64)
    logits = (a @ b.T).scatter(1, excluded, float("-inf"))
    expected = torch.logsumexp(logits, dim=1)
    got = row_logsumexp(a, b, excluded, chunk)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    expected_grads = torch.autograd.grad(expected, (a, b), upstream)
    for g_got, g_exp in zip(
        torch.autograd.grad(got, (a, b), upstream), expected_grads, strict=True
    ):
        torch.testing.assert_close(g_got, g_exp, rtol=1e-12, atol=1e-12)


def test_a_fully_excluded_row_gives_minus_infinity_not_nan() -> None:
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    lse = row_logsumexp(a, b, torch.tensor([[0, 1], [0, 0]]))
    assert lse[0] == float("-inf") and torch.isfinite(lse[1])


@pytest.mark.parametrize("bad", (0, -2, 2.5, True, "8"))
def test_bad_chunk_size_is_one_line_naming_it(bad: object) -> None:
    with pytest.raises(
        ValueError, match=f"chunk_size must be a positive integer or None, got {bad!r}"
    ):
        L.NTXentLoss(chunk_size=bad)  # type: ignore[arg-type]
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="chunk_size"):
        L.dcl(z, z, chunk_size=bad)  # type: ignore[arg-type]


def peak_mib(fn: ChunkedLoss, n: int, chunk: int | None) -> float:
    z1, z2 = (torch.randn(n, 32).requires_grad_(True) for _ in range(2))
    return cpu_peak_bytes(lambda: torch.autograd.grad(fn(z1, z2, chunk), (z1, z2))) / 2**20


@pytest.mark.parametrize("name", ("nt_xent", "dcl", "supcon_unlabelled", "sigmoid_modulated_kl"))
def test_chunked_peak_memory_grows_linearly(name: str) -> None:
    """Doubling N doubles the chunked peak (k×2N blocks + O(N·D))."""
    small, large = peak_mib(CASES[name], 1024, 64), peak_mib(CASES[name], 2048, 64)
    assert 1.7 < large / small < 2.3, (small, large)


@pytest.mark.parametrize("name", ("nt_xent", "dcl", "supcon_unlabelled"))
def test_dense_peak_memory_grows_quadratically(name: str) -> None:
    """The dense forms keep the N×N softmax for the backward: the contrast chunking removes.
    (The sigmoid loss has no dense form: its kernels always run in blocks.)"""
    dense_small, dense_large = peak_mib(CASES[name], 1024, None), peak_mib(CASES[name], 2048, None)
    assert dense_large / dense_small > 3.5, (dense_small, dense_large)
    assert peak_mib(CASES[name], 2048, 64) < dense_large / 8
