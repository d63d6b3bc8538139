"""Exactness of the contrastive losses against naive per-anchor references (float64).

Covers info_nce, nt_xent, dcl, dcl_symmetric, dclw, dhel and kcl and their Module wrappers:
values and gradients against `reference_contrastive`, closed forms on orthonormal embeddings,
symmetries and invariances, and hyperparameter defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from contrastkit.losses import (
    DCLLoss,
    DCLSymmetricLoss,
    DCLWLoss,
    DHELLoss,
    InfoNCELoss,
    KCLLoss,
    NTXentLoss,
    dcl,
    dcl_symmetric,
    dclw,
    dhel,
    info_nce,
    kcl,
    nt_xent,
)

from . import reference_contrastive as ref

RTOL, ATOL = 1e-10, 1e-12
GRAD_RTOL, GRAD_ATOL = 1e-9, 1e-11

SIZES_N = (2, 3, 7, 16)
SIZES_D = (2, 5, 32)
TEMPERATURES = (0.05, 0.1, 0.5, 1.0)


@dataclass(frozen=True)
class Case:
    """A loss, its naive reference, and the hyperparameters besides the temperature."""

    name: str
    fn: Callable[..., Tensor]
    reference: Callable[..., Tensor]
    fixed: dict[str, Any] = field(default_factory=dict)

    def kwargs(self, temperature: float) -> dict[str, Any]:
        """Keyword arguments for both the loss and the reference at this temperature."""
        return {"temperature": temperature, **self.fixed}


TEMPERATURE_CASES = [
    Case("info_nce", info_nce, ref.info_nce, {"symmetric": False}),
    Case("info_nce_symmetric", info_nce, ref.info_nce, {"symmetric": True}),
    Case("nt_xent", nt_xent, ref.nt_xent),
    Case("dcl", dcl, ref.dcl),
    Case("dcl_symmetric", dcl_symmetric, ref.dcl_symmetric),
    Case("dclw", dclw, ref.dclw, {"sigma": 0.5}),
    Case("dclw_sigma_0.1", dclw, ref.dclw, {"sigma": 0.1}),
    Case("dhel", dhel, ref.dhel, {"both_views": False}),
    Case("dhel_both_views", dhel, ref.dhel, {"both_views": True}),
]
KCL_PARAMS = [{"t": 0.5, "gamma": 1.0}, {"t": 2.0, "gamma": 16.0}, {"t": 5.0, "gamma": 3.0}]
# Every loss at one representative setting, for the tests that are about structure, not values.
ALL_LOSSES = [pytest.param(c.name, c.fn, c.kwargs(0.2), id=c.name) for c in TEMPERATURE_CASES]
ALL_LOSSES.append(pytest.param("kcl", kcl, {"t": 2.0, "gamma": 4.0}, id="kcl"))


def kcl_id(params: dict[str, float]) -> str:
    """Test id for one kcl hyperparameter setting."""
    return f"t{params['t']}-gamma{params['gamma']}"


def views(n: int, d: int, seed: int, requires_grad: bool = False) -> tuple[Tensor, Tensor]:
    """Two random float64 views whose rows have unequal norms, so normalisation matters."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, n, d, generator=g, dtype=torch.float64)
    z = z * (0.2 + 3 * torch.rand(2, n, 1, generator=g, dtype=torch.float64))
    z1, z2 = z[0].clone(), z[1].clone()
    return z1.requires_grad_(requires_grad), z2.requires_grad_(requires_grad)


def seed_of(*params: object) -> int:
    """A deterministic seed per parameter combination (str hashing is randomised per process)."""
    return sum(ord(ch) * (i + 1) for i, ch in enumerate(repr(params))) % 2**31


def orthonormal_rows(n: int, d: int, seed: int) -> Tensor:
    """n mutually orthogonal unit rows in R^d (d ≥ n), a random rotation of one-hot rows."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, n, generator=g, dtype=torch.float64))
    return q.T.contiguous()


def row_scales(n: int, seed: int) -> Tensor:
    """Random positive per-row factors in [0.1, 10]: the losses must not see them."""
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.empty(n, 1, dtype=torch.float64).uniform_(-2.3, 2.3, generator=g))


def equal_positive_pairs(n: int, d: int, cos: float, seed: int) -> tuple[Tensor, Tensor]:
    """Random views with u_i·v_i = `cos` for every i (each v_i is u_i turned by one angle)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.nn.functional.normalize(w - (w * u).sum(1, keepdim=True) * u, dim=1)
    v = cos * u + math.sqrt(1 - cos**2) * w
    return u * row_scales(n, seed + 1), v * row_scales(n, seed + 2)


def close(actual: Tensor, expected: Tensor | float, rtol: float = RTOL, atol: float = ATOL) -> None:
    """assert_close in float64 at the given tolerances."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def grads(loss: Tensor, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Gradients of `loss` with respect to `inputs`."""
    return torch.autograd.grad(loss, inputs)


# --- values against the naive references ----------------------------------------------------


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("d", SIZES_D)
@pytest.mark.parametrize("n", SIZES_N)
@pytest.mark.parametrize("case", TEMPERATURE_CASES, ids=lambda c: c.name)
def test_matches_reference(case: Case, n: int, d: int, temperature: float) -> None:
    """Each temperature loss equals its per-anchor reference on unnormalised random inputs."""
    z1, z2 = views(n, d, seed_of(case.name, n, d, temperature))
    close(
        case.fn(z1, z2, **case.kwargs(temperature)),
        case.reference(z1, z2, **case.kwargs(temperature)),
    )


@pytest.mark.parametrize("params", KCL_PARAMS, ids=kcl_id)
@pytest.mark.parametrize("d", SIZES_D)
@pytest.mark.parametrize("n", SIZES_N)
def test_kcl_matches_reference(n: int, d: int, params: dict[str, float]) -> None:
    """kcl equals the reference that uses ‖a − b‖² directly (not 2 − 2a·b)."""
    z1, z2 = views(n, d, seed_of("kcl", n, d, params))
    close(kcl(z1, z2, **params), ref.kcl(z1, z2, **params))


# --- gradients -----------------------------------------------------------------------------

GRAD_SETTINGS = [(2, 2, 0.05), (3, 5, 0.5), (7, 32, 0.1), (16, 5, 1.0)]


@pytest.mark.parametrize(("n", "d", "temperature"), GRAD_SETTINGS)
@pytest.mark.parametrize("case", TEMPERATURE_CASES, ids=lambda c: c.name)
def test_gradient_matches_reference(case: Case, n: int, d: int, temperature: float) -> None:
    """Autograd through the loss equals autograd through the naive reference."""
    z1, z2 = views(n, d, seed_of("grad", case.name, n, d), requires_grad=True)
    kwargs = case.kwargs(temperature)
    expected = grads(case.reference(z1, z2, **kwargs), (z1, z2))
    for got, want in zip(grads(case.fn(z1, z2, **kwargs), (z1, z2)), expected, strict=True):
        close(got, want, GRAD_RTOL, GRAD_ATOL)


@pytest.mark.parametrize(("n", "d"), [(2, 2), (7, 32), (16, 5)])
@pytest.mark.parametrize("params", KCL_PARAMS, ids=kcl_id)
def test_kcl_gradient_matches_reference(n: int, d: int, params: dict[str, float]) -> None:
    """kcl's gradient equals the reference's, including through the normalisation."""
    z1, z2 = views(n, d, seed_of("kcl-grad", n, d, params), requires_grad=True)
    expected = grads(ref.kcl(z1, z2, **params), (z1, z2))
    for got, want in zip(grads(kcl(z1, z2, **params), (z1, z2)), expected, strict=True):
        close(got, want, GRAD_RTOL, GRAD_ATOL)


GRADCHECK_LOSSES = [p for p in ALL_LOSSES if not p.id.startswith("dclw")]


@pytest.mark.parametrize(("name", "fn", "kwargs"), GRADCHECK_LOSSES)
def test_gradcheck(name: str, fn: Callable[..., Tensor], kwargs: dict[str, Any]) -> None:
    """Analytical gradients agree with finite differences of the loss."""
    z1, z2 = views(3, 4, seed_of("gradcheck", name), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, **kwargs), (z1, z2))


@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_dclw_gradcheck_at_equal_positive_similarities(sigma: float) -> None:
    """gradcheck for dclw where its detached weights cannot matter.

    Through the weights, ∂L/∂s_j ∝ p_j(s_j − Σ_i p_i s_i) with p = softmax(s/σ), which vanishes
    when every positive similarity s_i is equal; there finite differences of the full loss must
    agree with dclw's (weight-detached) analytical gradient.
    """
    z1, z2 = equal_positive_pairs(3, 4, 0.3, seed_of("dclw-gradcheck", sigma))
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: dclw(a, b, temperature=0.2, sigma=sigma), (z1, z2))


def test_dclw_weights_carry_no_gradient() -> None:
    """dclw's gradient is the one with weights under no_grad, not the one through the weights."""
    z1, z2 = views(7, 5, seed_of("dclw-nograd"), requires_grad=True)
    got = grads(dclw(z1, z2, temperature=0.2, sigma=0.5), (z1, z2))
    detached = grads(ref.dclw(z1, z2, temperature=0.2, sigma=0.5), (z1, z2))
    attached = grads(ref.dclw(z1, z2, temperature=0.2, sigma=0.5, weights_grad=True), (z1, z2))
    for g, want, other in zip(got, detached, attached, strict=True):
        close(g, want, GRAD_RTOL, GRAD_ATOL)
        assert not torch.allclose(g, other, rtol=1e-4, atol=1e-6)


# --- closed forms on orthonormal embeddings -------------------------------------------------


def _orthonormal_pair(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Views with u = v and all N rows mutually orthogonal, each row rescaled at random."""
    e = orthonormal_rows(n, n + 3, seed)
    return e * row_scales(n, seed + 1), e * row_scales(n, seed + 2)


# Loss on orthonormal rows with u = v, as a function of N and 1/τ: positives at cos 1,
# every negative at cos 0 (so exp(0) = 1 each).
CLOSED_FORMS: dict[str, Callable[[int, float], float]] = {
    "info_nce": lambda n, b: -b + math.log(math.exp(b) + n - 1),
    "info_nce_symmetric": lambda n, b: -b + math.log(math.exp(b) + n - 1),
    "nt_xent": lambda n, b: -b + math.log(math.exp(b) + 2 * n - 2),
    "dcl": lambda n, b: -b + math.log(2 * n - 2),
    "dcl_symmetric": lambda n, b: -b + math.log(2 * n - 2),
    # Equal positive similarities make every dclw weight 1.
    "dclw": lambda n, b: -b + math.log(2 * n - 2),
    "dclw_sigma_0.1": lambda n, b: -b + math.log(2 * n - 2),
    "dhel": lambda n, b: -b + math.log(n - 1),
    "dhel_both_views": lambda n, b: -b + 2 * math.log(n - 1),
}


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("n", SIZES_N)
@pytest.mark.parametrize("case", TEMPERATURE_CASES, ids=lambda c: c.name)
def test_closed_form_on_orthonormal_embeddings(case: Case, n: int, temperature: float) -> None:
    """With u = v orthonormal each loss reduces to a formula in N and τ alone."""
    z1, z2 = _orthonormal_pair(n, seed_of("closed", case.name, n, temperature))
    expected = CLOSED_FORMS[case.name](n, 1 / temperature)
    close(case.fn(z1, z2, **case.kwargs(temperature)), expected)


@pytest.mark.parametrize("params", KCL_PARAMS, ids=kcl_id)
@pytest.mark.parametrize("n", SIZES_N)
def test_kcl_closed_form_on_orthonormal_embeddings(n: int, params: dict[str, float]) -> None:
    """K = 1 on positives and e^{−2t} between orthogonal rows: loss = −1 + γ·e^{−2t}."""
    z1, z2 = _orthonormal_pair(n, seed_of("kcl-closed", n, params))
    close(kcl(z1, z2, **params), -1 + params["gamma"] * math.exp(-2 * params["t"]))


@pytest.mark.parametrize("cos", [-0.5, 0.3, 0.9])
@pytest.mark.parametrize("sigma", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("n", SIZES_N)
def test_dclw_equals_dcl_symmetric_when_positives_are_equal(
    n: int, sigma: float, cos: float
) -> None:
    """Equal positive similarities give softmax 1/N, so every weight 2 − N/N = 1."""
    z1, z2 = equal_positive_pairs(n, 6, cos, seed_of("dclw-equal", n, sigma, cos))
    close(dclw(z1, z2, temperature=0.2, sigma=sigma), dcl_symmetric(z1, z2, temperature=0.2))


# --- symmetries and invariances -------------------------------------------------------------

SYMMETRIC = {
    "info_nce_symmetric",
    "nt_xent",
    "dcl_symmetric",
    "dclw",
    "dclw_sigma_0.1",
    "dhel_both_views",
    "kcl",
}


@pytest.mark.parametrize(("name", "fn", "kwargs"), ALL_LOSSES)
def test_view_swap(name: str, fn: Callable[..., Tensor], kwargs: dict[str, Any]) -> None:
    """Symmetric losses are unchanged by swapping the views; the one-sided ones change."""
    z1, z2 = views(7, 5, seed_of("swap", name))
    forward, swapped = fn(z1, z2, **kwargs), fn(z2, z1, **kwargs)
    if name in SYMMETRIC:
        close(swapped, forward, rtol=1e-12)
    else:
        assert not torch.isclose(swapped, forward, rtol=1e-3)


@pytest.mark.parametrize(("name", "fn", "kwargs"), ALL_LOSSES)
def test_invariant_to_positive_row_rescaling(
    name: str, fn: Callable[..., Tensor], kwargs: dict[str, Any]
) -> None:
    """Losses normalise their inputs, so positive per-row factors change nothing."""
    z1, z2 = views(7, 5, seed_of("scale", name))
    rescaled = fn(z1 * row_scales(7, 1), z2 * row_scales(7, 2), **kwargs)
    close(rescaled, fn(z1, z2, **kwargs), rtol=1e-12)


@pytest.mark.parametrize(("name", "fn", "kwargs"), ALL_LOSSES)
def test_invariant_to_batch_permutation(
    name: str, fn: Callable[..., Tensor], kwargs: dict[str, Any]
) -> None:
    """Reordering the batch (the same order in both views) leaves every loss unchanged."""
    z1, z2 = views(7, 5, seed_of("perm", name))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    close(fn(z1[perm], z2[perm], **kwargs), fn(z1, z2, **kwargs), rtol=1e-12)


# --- Module wrappers and defaults -----------------------------------------------------------

MODULE_CASES = [
    (InfoNCELoss, info_nce, {"temperature": 0.07}),
    (InfoNCELoss, info_nce, {"temperature": 0.2, "symmetric": True}),
    (NTXentLoss, nt_xent, {"temperature": 0.3}),
    (DCLLoss, dcl, {"temperature": 0.2}),
    (DCLSymmetricLoss, dcl_symmetric, {"temperature": 0.2}),
    (DCLWLoss, dclw, {"temperature": 0.2, "sigma": 0.7}),
    (DHELLoss, dhel, {"temperature": 0.25}),
    (DHELLoss, dhel, {"temperature": 0.4, "both_views": True}),
    (KCLLoss, kcl, {"t": 1.5, "gamma": 4.0}),
]


@pytest.mark.parametrize(
    ("cls", "fn", "kwargs"),
    MODULE_CASES,
    ids=[
        f"{c.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for c, _, kw in MODULE_CASES
    ],
)
def test_module_equals_function(
    cls: type[nn.Module], fn: Callable[..., Tensor], kwargs: dict[str, Any]
) -> None:
    """Each wrapper passes its hyperparameters through to its function unchanged."""
    z1, z2 = views(7, 5, seed_of("module", cls.__name__, kwargs))
    assert torch.equal(cls(**kwargs)(z1, z2), fn(z1, z2, **kwargs))


BAD_HYPERPARAMETERS = [
    (InfoNCELoss, "temperature", 0.0),
    (InfoNCELoss, "temperature", -0.1),
    (NTXentLoss, "temperature", -0.5),
    (DCLLoss, "temperature", 0.0),
    (DCLSymmetricLoss, "temperature", -1.0),
    (DCLWLoss, "temperature", -0.2),
    (DCLWLoss, "sigma", 0.0),
    (DHELLoss, "temperature", -0.3),
    (KCLLoss, "t", 0.0),
    (KCLLoss, "t", -2.0),
]


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    BAD_HYPERPARAMETERS,
    ids=[f"{c.__name__}-{n}={v}" for c, n, v in BAD_HYPERPARAMETERS],
)
def test_module_rejects_non_positive_hyperparameter(
    cls: type[nn.Module], name: str, value: float
) -> None:
    """A temperature (or kernel width) ≤ 0 fails at construction, naming the value."""
    with pytest.raises(ValueError, match=re.escape(repr(value))):
        cls(**{name: value})


# Spec defaults: function, its Module, and the reference evaluated at the spec's values.
DEFAULTS = [
    (info_nce, InfoNCELoss, lambda a, b: ref.info_nce(a, b, temperature=0.1, symmetric=False)),
    (nt_xent, NTXentLoss, lambda a, b: ref.nt_xent(a, b, temperature=0.5)),
    (dcl, DCLLoss, lambda a, b: ref.dcl(a, b, temperature=0.1)),
    (dcl_symmetric, DCLSymmetricLoss, lambda a, b: ref.dcl_symmetric(a, b, temperature=0.1)),
    (dclw, DCLWLoss, lambda a, b: ref.dclw(a, b, temperature=0.1, sigma=0.5)),
    (dhel, DHELLoss, lambda a, b: ref.dhel(a, b, temperature=0.3, both_views=False)),
    (kcl, KCLLoss, lambda a, b: ref.kcl(a, b, t=2.0, gamma=16.0)),
]


@pytest.mark.parametrize(
    ("fn", "cls", "reference"), DEFAULTS, ids=[d[0].__name__ for d in DEFAULTS]
)
def test_defaults_match_spec(
    fn: Callable[..., Tensor], cls: type[nn.Module], reference: Callable[..., Tensor]
) -> None:
    """Called without hyperparameters, function and Module use the spec's defaults."""
    z1, z2 = views(7, 5, seed_of("defaults", fn.__name__))
    expected = reference(z1, z2)
    close(fn(z1, z2), expected)
    close(cls()(z1, z2), expected)
