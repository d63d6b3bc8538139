"""The method losses (BYOL, MoCo v2/v3, NNCLR, SIGReg, LeJEPA) against float64 loop references,
in half precision, and the LeJEPA pitfalls other libraries shipped."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import contrastkit.losses as L

from . import reference_methods as R

N, D, Q, S = 6, 5, 7, 4


def randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def unit_columns(d: int, s: int, seed: int = 9) -> Tensor:
    a = randn(d, s, seed=seed)
    return a / a.norm(dim=0)


# name → (inputs, library call, reference call)
Inputs = dict[str, Tensor]
CASES: dict[str, tuple[Callable[[], Inputs], Callable[..., Tensor], Callable[..., Tensor]]] = {
    "byol": (
        lambda: {"p": randn(N, D, seed=1), "z": randn(N, D, seed=2)},
        lambda x: L.byol(x["p"], x["z"]),
        lambda x: R.byol(x["p"], x["z"]),
    ),
    "moco": (
        lambda: {"q": randn(N, D, seed=1), "k": randn(N, D, seed=2), "queue": randn(Q, D, seed=3)},
        lambda x: L.moco(x["q"], x["k"], x["queue"], temperature=0.3),
        lambda x: R.moco(x["q"], x["k"], x["queue"], 0.3),
    ),
    "moco_empty_queue": (
        lambda: {"q": randn(N, D, seed=1), "k": randn(N, D, seed=2)},
        lambda x: L.moco(x["q"], x["k"], None, temperature=0.3),
        lambda x: R.moco(x["q"], x["k"], None, 0.3),
    ),
    "moco_v3": (
        lambda: {"q": randn(N, D, seed=1), "k": randn(N, D, seed=2)},
        lambda x: L.moco_v3(x["q"], x["k"], temperature=0.4),
        lambda x: R.moco_v3(x["q"], x["k"], 0.4),
    ),
    "nnclr": (
        lambda: {"z": randn(N, D, seed=1), "p": randn(N, D, seed=2), "s": randn(Q, D, seed=3)},
        lambda x: L.nnclr(x["z"], x["p"], x["s"], temperature=0.2),
        lambda x: R.nnclr(x["z"], x["p"], x["s"], 0.2),
    ),
    "sigreg": (
        lambda: {"z": randn(2, N, D, seed=1), "a": unit_columns(D, S)},
        lambda x: L.sigreg(x["z"], x["a"], knots=5, t_max=3.0),
        lambda x: R.sigreg(x["z"], x["a"], 5, 3.0),
    ),
    "lejepa": (
        lambda: {"v": randn(4, N, D, seed=1), "a": unit_columns(D, S)},
        lambda x: L.lejepa(x["v"], 2, lambd=0.3, directions=x["a"], knots=5),
        lambda x: R.lejepa(x["v"], 2, 0.3, x["a"], 5),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_value_and_gradients_equal_the_loop_reference(name: str) -> None:
    make, library, reference = CASES[name]
    inputs = {k: v.requires_grad_() for k, v in make().items()}
    got = library(inputs)
    got_grads = torch.autograd.grad(got, list(inputs.values()), materialize_grads=True)
    ref_inputs = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    expected = reference(ref_inputs)
    ref_grads = torch.autograd.grad(expected, list(ref_inputs.values()), materialize_grads=True)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    for key, g, r in zip(inputs, got_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-10, msg=key)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_finite_and_close(name: str, dtype: torch.dtype) -> None:
    make, library, _ = CASES[name]
    inputs = make()
    half = {k: v.to(dtype).requires_grad_() for k, v in inputs.items()}
    loss = library(half)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    grads = torch.autograd.grad(loss, list(half.values()), materialize_grads=True)
    assert all(torch.isfinite(g).all() for g in grads)
    rounded = {k: v.to(dtype).double() for k, v in inputs.items()}
    if "a" in rounded:  # rounding moves the columns off the unit sphere by up to 2⁻⁸
        rounded["a"] = rounded["a"] / rounded["a"].norm(dim=0)
        half["a"] = rounded["a"].to(dtype)
    torch.testing.assert_close(library(half).double(), library(rounded), rtol=2e-2, atol=2e-2)


# --- closed forms and stop-gradients -------------------------------------------------------


def test_byol_is_zero_for_aligned_and_four_for_opposite_vectors() -> None:
    p = randn(N, D)
    assert L.byol(p, 3 * p).item() == pytest.approx(0, abs=1e-12)
    assert L.byol(p, -p).item() == pytest.approx(4, abs=1e-12)


def test_byol_moco_v3_and_nnclr_give_the_target_no_gradient() -> None:
    z, k = randn(N, D, seed=1).requires_grad_(), randn(N, D, seed=2).requires_grad_()
    for loss in (L.byol(z, k), L.moco_v3(z, k)):
        assert torch.autograd.grad(loss, k, allow_unused=True)[0] is None
    z2 = randn(N, D, seed=3).requires_grad_()
    loss = L.nnclr(z2, z, randn(Q, D, seed=4))
    assert torch.autograd.grad(loss, z2, allow_unused=True)[0] is None


def test_nnclr_uses_the_neighbour_not_the_query() -> None:
    """A support set holding p itself makes every anchor its own positive: the loss equals
    InfoNCE(p, p), whatever z is, as long as z_i is nearest to p_i."""
    p = randn(N, D, seed=1)
    z = p + 1e-3 * randn(N, D, seed=2)
    support = torch.cat([p, 10 * randn(3, D, seed=3)])
    torch.testing.assert_close(L.nnclr(z, p, support), L.info_nce(p, p), rtol=1e-12, atol=0)
    assert L.nearest_neighbour_index(z, support).tolist() == list(range(N))


def test_moco_queue_rows_are_negatives() -> None:
    q, k = randn(N, D, seed=1), randn(N, D, seed=2)
    assert L.moco(q, k, torch.empty(0, D, dtype=q.dtype)).item() == 0.0
    far, near = -q[:1].repeat(3, 1), q[:1].repeat(3, 1)
    assert L.moco(q[:1], k[:1], far) < L.moco(q[:1], k[:1], near)


def test_bad_queue_and_directions_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"queue must have shape \(size, 5\)"):
        L.moco(randn(N, D), randn(N, D), randn(3, 4))
    with pytest.raises(ValueError, match="unit columns"):
        L.sigreg(randn(N, D), 2 * unit_columns(D, S))
    with pytest.raises(ValueError, match=r"directions must have shape \(5, S\)"):
        L.sigreg(randn(N, D), unit_columns(4, S))
    with pytest.raises(ValueError, match="n_global must lie in"):
        L.lejepa(randn(2, N, D), 3)
    with pytest.raises(ValueError, match="lambd must lie in"):
        L.lejepa(randn(2, N, D), 2, lambd=1.5)


def test_sigreg_separates_a_gaussian_from_a_collapsed_sample() -> None:
    """The statistic is O(1) for a standard normal sample and grows with N for a collapsed one."""
    a = unit_columns(8, 16)
    gaussian = L.sigreg(randn(2048, 8), a)
    collapsed = L.sigreg(torch.zeros(2048, 8, dtype=torch.float64), a)
    assert gaussian < 3.0 and collapsed > 100 * gaussian


# --- LeJEPA pitfalls ------------------------------------------------------------------------


def test_lejepa_weights_invariance_by_one_minus_lambda() -> None:
    views, a = randn(3, N, D), unit_columns(D, S)
    terms = L.lejepa_terms(views, 2, a)
    for lambd in (0.0, 0.3, 1.0):
        expected = (1 - lambd) * terms["invariance"] + lambd * terms["sigreg"]
        torch.testing.assert_close(L.lejepa(views, 2, lambd, a), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(terms["invariance"], R.invariance(views, 2), rtol=1e-12, atol=0)


def test_lejepa_local_views_are_pulled_but_do_not_move_the_centre() -> None:
    """Every view (local ones too) meets the mean of the global views only; SIGReg averages
    over all views, so a list and a stacked tensor agree."""
    views, a = randn(4, N, D).requires_grad_(), unit_columns(D, S)
    terms = L.lejepa_terms(list(views), 2, a)
    (grad,) = torch.autograd.grad(terms["invariance"], views)
    assert grad[2:].abs().min() > 0  # local views are pulled towards the centre
    moved = views.detach().clone()
    moved[3] += 1.0
    centre_only_global = R.invariance(moved, 2)
    torch.testing.assert_close(L.lejepa_terms(moved, 2, a)["invariance"], centre_only_global)
    per_view = torch.stack([L.sigreg(v, a) for v in views.detach()]).mean()
    torch.testing.assert_close(terms["sigreg"].detach(), per_view, rtol=1e-12, atol=0)


def test_lejepa_module_draws_fresh_directions_each_step_and_the_same_on_replay() -> None:
    loss = L.LeJEPALoss(slices=8)
    views = randn(2, N, D)
    values = []
    for step in (0, 1, 0):
        loss.set_step(step, 10)
        values.append(loss(views, 2))
    assert values[0] != values[1] and values[0] == values[2]
    loss.set_step(0, 10)
    expected = L.lejepa(views, 2, 0.05, loss.directions(D, views.device))
    torch.testing.assert_close(values[0], expected, rtol=1e-12, atol=0)
