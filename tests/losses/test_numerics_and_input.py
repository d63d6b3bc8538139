"""Precision, extreme inputs and input validation for every loss of `contrastkit.losses`.

Half-precision inputs and CPU autocast must not change what a loss computes (it runs in
float32); identical embeddings at τ = 0.01, up to N = 8192, must give finite losses and
gradients, and in fact the exact closed-form values; bad shapes, batch sizes, labels and
hyperparameters must raise ValueError naming the offending value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

from contrastkit.losses import (
    AlignmentLoss,
    BarlowTwinsLoss,
    SigmoidLoss,
    SupConLoss,
    UniformityLoss,
    VICRegLoss,
    alignment,
    barlow_twins,
    dcl,
    dcl_symmetric,
    dclw,
    dhel,
    info_nce,
    kcl,
    nt_xent,
    sigmoid,
    simsiam,
    supcon,
    uniformity,
    vicreg,
)

TAU = 0.01
SIGMOID_BIAS = -10.0
LARGE_N, SMALL_D = 8192, 8


def _supcon(labelled: bool) -> Callable[[Tensor, Tensor], Tensor]:
    """supcon on the two views stacked as (N, 2, D), with three classes or without labels."""

    def loss(z1: Tensor, z2: Tensor) -> Tensor:
        labels = torch.arange(z1.shape[0]) % 3 if labelled else None
        return supcon(torch.stack([z1, z2], dim=1), labels, TAU)

    return loss


@dataclass(frozen=True)
class Case:
    """A loss of two views at τ = 0.01 (or its sharpest analogue) and its exact value when
    every row of both views is the same vector, as a function of the batch size N.

    `large_batch=False` marks cases whose code path another case runs at N = 8192 (dcl_symmetric
    inside dclw, one view inside both, ...), to keep that test within its time budget.
    """

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    identical: Callable[[int], float]
    large_batch: bool = True
    tolerance: float = 1e-5


def _sigmoid_identical(n: int) -> float:
    """All logits equal 1/τ + bias: N positives cost ~0, N(N−1) negatives log(1 + e^logit)."""
    logit = 1 / TAU + SIGMOID_BIAS
    return (n - 1) * (logit + math.log1p(math.exp(-logit))) + math.log1p(math.exp(-logit))


CASES = [
    Case("info_nce", lambda a, b: info_nce(a, b, TAU), math.log, large_batch=False),
    Case("info_nce_symmetric", lambda a, b: info_nce(a, b, TAU, symmetric=True), math.log),
    Case("nt_xent", lambda a, b: nt_xent(a, b, TAU), lambda n: math.log(2 * n - 1)),
    Case("dcl", lambda a, b: dcl(a, b, TAU), lambda n: math.log(2 * n - 2)),
    Case(
        "dcl_symmetric",
        lambda a, b: dcl_symmetric(a, b, TAU),
        lambda n: math.log(2 * n - 2),
        large_batch=False,
    ),
    Case("dclw", lambda a, b: dclw(a, b, TAU), lambda n: math.log(2 * n - 2)),
    Case("dhel", lambda a, b: dhel(a, b, TAU), lambda n: math.log(n - 1), large_batch=False),
    Case(
        "dhel_both_views",
        lambda a, b: dhel(a, b, TAU, both_views=True),
        lambda n: 1 / TAU + 2 * math.log(n - 1),
    ),
    Case("kcl", lambda a, b: kcl(a, b, t=2.0, gamma=16.0), lambda n: 16.0 - 1.0),
    Case("vicreg", vicreg, lambda n: 25.0 * (1 - math.sqrt(1e-4))),
    # The batch-norm kernel's float32 statistics leave ~1e-5 of noise on a collapsed batch,
    # as torch.nn.BatchNorm1d and lightly's loss do.
    Case("barlow_twins", barlow_twins, lambda n: float(SMALL_D), tolerance=5e-5),
    Case("simsiam", lambda a, b: simsiam(a, b, b, a), lambda n: -1.0),
    Case("supcon", _supcon(labelled=False), lambda n: math.log(2 * n - 1), large_batch=False),
    Case("supcon_labels", _supcon(labelled=True), lambda n: math.log(2 * n - 1)),
    Case(
        "sigmoid",
        lambda a, b: sigmoid(a, b, 1 / TAU, SIGMOID_BIAS),
        _sigmoid_identical,
        large_batch=False,
    ),
    Case(
        "sigmoid_modulated",
        lambda a, b: sigmoid(a, b, 1 / TAU, SIGMOID_BIAS, gamma=2.0, kl_weight=1.0),
        _sigmoid_identical,
    ),
    Case(
        "SigmoidLoss",
        lambda a, b: SigmoidLoss(1 / TAU, SIGMOID_BIAS, gamma=2.0, kl_weight=1.0)(a, b),
        _sigmoid_identical,
        large_batch=False,
    ),
    Case("alignment", alignment, lambda n: 0.0),
    Case("uniformity", lambda a, b: uniformity(a, t=2.0), lambda n: 0.0),
]


def case_id(case: Case) -> str:
    """Test id of a case."""
    return case.name


def random_views(n: int, d: int, dtype: torch.dtype, seed: int) -> tuple[Tensor, Tensor]:
    """Two random batches in `dtype`, drawn in float32 and rounded once."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, n, d, generator=g) * 2 + 0.3
    return z[0].to(dtype), z[1].to(dtype)


def identical_views(n: int, d: int) -> tuple[Tensor, Tensor]:
    """Two float32 leaf batches whose rows are all one (non-unit) vector."""
    row = torch.linspace(-1.0, 2.0, d)
    return row.repeat(n, 1).requires_grad_(), row.repeat(n, 1).requires_grad_()


# --- precision --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_half_precision_inputs_are_computed_in_float32(case: Case, dtype: torch.dtype) -> None:
    z1, z2 = random_views(32, 16, dtype, seed=1)
    loss = case.fn(z1, z2)
    assert loss.dtype == torch.float32
    expected = case.fn(z1.float(), z2.float())
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cpu_autocast_does_not_downcast_inside_the_loss(case: Case) -> None:
    """At τ = 0.01 a bfloat16 matmul would move every loss by far more than the tolerance."""
    z1, z2 = random_views(32, 16, torch.float32, seed=2)
    expected = case.fn(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = case.fn(z1, z2)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


# --- extreme inputs ---------------------------------------------------------------------------


def check_identical_embeddings(case: Case, n: int) -> None:
    """Loss equals its closed form on identical rows, and every gradient is finite."""
    z1, z2 = identical_views(n, SMALL_D)
    loss = case.fn(z1, z2)
    assert torch.isfinite(loss)
    torch.testing.assert_close(
        loss.double(),
        torch.tensor(case.identical(n), dtype=torch.float64),
        rtol=case.tolerance,
        atol=case.tolerance,
    )
    grads = torch.autograd.grad(loss, (z1, z2), allow_unused=True)
    assert grads[0] is not None
    for g in grads:
        assert g is None or torch.isfinite(g).all()


@pytest.mark.parametrize("n", [2, 16])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_identical_embeddings_small_batch(case: Case, n: int) -> None:
    check_identical_embeddings(case, n)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c.large_batch], ids=case_id)
def test_identical_embeddings_large_batch(case: Case) -> None:
    """N = 8192: the N×N (or 2N×2N) logits at τ = 0.01, all equal to 1/τ, stay exact."""
    check_identical_embeddings(case, LARGE_N)


# --- bad input --------------------------------------------------------------------------------

# Losses of two (batch, dim) views at their default hyperparameters.
PAIR_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "info_nce": info_nce,
    "nt_xent": nt_xent,
    "dcl": dcl,
    "dcl_symmetric": dcl_symmetric,
    "dclw": dclw,
    "dhel": dhel,
    "kcl": kcl,
    "vicreg": vicreg,
    "barlow_twins": barlow_twins,
    "sigmoid": sigmoid,
    "alignment": alignment,
    "simsiam_predictions": lambda a, b: simsiam(a, b, a.detach(), b.detach()),
    "simsiam_targets": lambda a, b: simsiam(a.detach(), a.detach(), a, b),
    "simsiam_prediction_vs_target": lambda a, b: simsiam(a, a, b, b),
}
# Losses that need negatives or batch statistics, as functions of one or two views.
BATCH_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    **{k: v for k, v in PAIR_LOSSES.items() if k != "alignment" and "simsiam" not in k},
    "uniformity": lambda a, b: uniformity(a),
    # N = 1 leaves supcon no negatives however many views, as for nt_xent, which rejects it.
    "supcon": lambda a, b: supcon(torch.stack([a, b], dim=1)),
    "supcon_labels": lambda a, b: supcon(torch.stack([a, b], dim=1), torch.zeros(a.shape[0])),
}


def raises_naming(fn: Callable[[], Any], *values: str) -> None:
    """`fn()` raises ValueError whose message contains every one of `values`."""
    with pytest.raises(ValueError) as err:
        fn()
    for value in values:
        assert value in str(err.value), (value, str(err.value))


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("name", sorted(BATCH_LOSSES))
def test_batch_below_two_is_rejected(name: str, n: int) -> None:
    z1, z2 = torch.randn(n, 4), torch.randn(n, 4)
    with pytest.raises(ValueError) as err:
        BATCH_LOSSES[name](z1, z2)
    assert re.search(rf"\b{n}\b", str(err.value)), str(err.value)


@pytest.mark.parametrize(
    "fn",
    [alignment, lambda a, b: simsiam(a, b, b, a)],
    ids=["alignment", "simsiam"],
)
def test_per_sample_losses_need_one_row_not_zero(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """alignment and simsiam are means of per-sample terms: one sample is enough."""
    assert torch.isfinite(fn(torch.randn(1, 4), torch.randn(1, 4)))
    raises_naming(lambda: fn(torch.randn(0, 4), torch.randn(0, 4)), "0")


@pytest.mark.parametrize(("shape1", "shape2"), [((4, 8), (4, 6)), ((4, 8), (5, 8))])
@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_mismatched_shapes_are_rejected(
    name: str, shape1: tuple[int, ...], shape2: tuple[int, ...]
) -> None:
    z1, z2 = torch.randn(shape1), torch.randn(shape2)
    raises_naming(lambda: PAIR_LOSSES[name](z1, z2), str(shape1), str(shape2))


@pytest.mark.parametrize("shape", [(8,), (2, 4, 8)])
@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_wrong_ndim_is_rejected(name: str, shape: tuple[int, ...]) -> None:
    z = torch.randn(shape)
    raises_naming(lambda: PAIR_LOSSES[name](z, z.clone()), str(shape))


@pytest.mark.parametrize("shape", [(8,), (2, 4, 8)])
def test_uniformity_wrong_ndim_is_rejected(shape: tuple[int, ...]) -> None:
    raises_naming(lambda: uniformity(torch.randn(shape)), str(shape))


@pytest.mark.parametrize("shape", [(4, 8), (8,), (2, 2, 2, 8)])
def test_supcon_wrong_ndim_is_rejected(shape: tuple[int, ...]) -> None:
    raises_naming(lambda: supcon(torch.randn(shape)), str(shape))


@pytest.mark.parametrize("labels_shape", [(3,), (5,), (4, 1)])
def test_supcon_wrong_label_shape_is_rejected(labels_shape: tuple[int, ...]) -> None:
    z = torch.randn(4, 2, 8)
    raises_naming(lambda: supcon(z, torch.zeros(labels_shape)), str(labels_shape))


# (name, call with the bad value, which must be > 0 or >= 0)
HYPERPARAMETERS: list[tuple[str, Callable[[Tensor, Tensor, float], Any], bool]] = [
    ("info_nce.temperature", lambda a, b, x: info_nce(a, b, temperature=x), True),
    ("nt_xent.temperature", lambda a, b, x: nt_xent(a, b, temperature=x), True),
    ("dcl.temperature", lambda a, b, x: dcl(a, b, temperature=x), True),
    ("dcl_symmetric.temperature", lambda a, b, x: dcl_symmetric(a, b, temperature=x), True),
    ("dclw.temperature", lambda a, b, x: dclw(a, b, temperature=x), True),
    ("dclw.sigma", lambda a, b, x: dclw(a, b, sigma=x), True),
    ("dhel.temperature", lambda a, b, x: dhel(a, b, temperature=x), True),
    ("kcl.t", lambda a, b, x: kcl(a, b, t=x), True),
    ("supcon.temperature", lambda a, b, x: supcon(torch.stack([a, b], 1), temperature=x), True),
    ("sigmoid.scale", lambda a, b, x: sigmoid(a, b, scale=x), True),
    ("uniformity.t", lambda a, b, x: uniformity(a, t=x), True),
    ("alignment.alpha", lambda a, b, x: alignment(a, b, alpha=x), True),
    ("vicreg.sim_weight", lambda a, b, x: vicreg(a, b, sim_weight=x), False),
    ("vicreg.var_weight", lambda a, b, x: vicreg(a, b, var_weight=x), False),
    ("vicreg.cov_weight", lambda a, b, x: vicreg(a, b, cov_weight=x), False),
    ("barlow_twins.lambd", lambda a, b, x: barlow_twins(a, b, lambd=x), False),
    ("sigmoid.gamma", lambda a, b, x: sigmoid(a, b, gamma=x), False),
    ("sigmoid.kl_weight", lambda a, b, x: sigmoid(a, b, kl_weight=x), False),
    ("SupConLoss", lambda a, b, x: SupConLoss(x)(torch.stack([a, b], 1)), True),
    ("SigmoidLoss.init_scale", lambda a, b, x: SigmoidLoss(init_scale=x)(a, b), True),
    ("SigmoidLoss.gamma", lambda a, b, x: SigmoidLoss(gamma=x)(a, b), False),
    ("SigmoidLoss.kl_weight", lambda a, b, x: SigmoidLoss(kl_weight=x)(a, b), False),
    ("UniformityLoss", lambda a, b, x: UniformityLoss(x)(a), True),
    ("AlignmentLoss", lambda a, b, x: AlignmentLoss(x)(a, b), True),
    ("VICRegLoss", lambda a, b, x: VICRegLoss(sim_weight=x)(a, b), False),
    ("BarlowTwinsLoss", lambda a, b, x: BarlowTwinsLoss(x)(a, b), False),
]
BAD_POSITIVE = [0.0, -0.5, float("nan")]
BAD_NON_NEGATIVE = [-1e-3, -2.0, float("nan")]


@pytest.mark.parametrize(
    ("call", "value"),
    [
        pytest.param(call, value, id=f"{name}={value}")
        for name, call, strict in HYPERPARAMETERS
        for value in (BAD_POSITIVE if strict else BAD_NON_NEGATIVE)
    ],
)
def test_bad_hyperparameter_is_rejected(
    call: Callable[[Tensor, Tensor, float], Any], value: float
) -> None:
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    raises_naming(lambda: call(z1, z2, value), repr(value))


@pytest.mark.parametrize(
    "call", [pytest.param(c, id=n) for n, c, strict in HYPERPARAMETERS if not strict]
)
def test_zero_weight_is_accepted(call: Callable[[Tensor, Tensor, float], Any]) -> None:
    """Weights and penalties may be 0: only negative values are bad."""
    assert torch.isfinite(call(torch.randn(4, 8), torch.randn(4, 8), 0.0))
