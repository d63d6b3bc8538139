"""DINO, SwAV, Sinkhorn-Knopp, the DINO centre and the teacher-temperature schedule against the
naive float64 loops of `reference_prototypes`, closed forms, and their input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.losses import (
    LOSS_MODULES,
    DINOLoss,
    SwAVLoss,
    dino,
    dino_center,
    sinkhorn,
    swav,
    teacher_temperature,
)

from . import reference_prototypes as ref

TOL = {"rtol": 1e-10, "atol": 1e-12}
BATCH, DIM = 5, 7


def views(count: int, seed: int, scale: float = 3.0, rows: int = BATCH) -> list[Tensor]:
    """`count` float64 (rows, DIM) leaf views that require grad."""
    g = torch.Generator().manual_seed(seed)
    return [
        (scale * torch.randn(rows, DIM, generator=g, dtype=torch.float64)).requires_grad_(True)
        for _ in range(count)
    ]


def grads(loss: Tensor, inputs: list[Tensor]) -> tuple[Tensor, ...]:
    return torch.autograd.grad(loss, inputs, materialize_grads=True)


@pytest.mark.parametrize(("n_global", "n_local"), [(2, 0), (2, 3), (1, 2), (3, 1)])
def test_dino_equals_the_loop_reference_in_value_and_gradient(n_global: int, n_local: int) -> None:
    student = views(n_global + n_local, seed=1)
    teacher = views(n_global, seed=2)
    center = torch.randn(DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours = dino(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    expected = ref.dino(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    torch.testing.assert_close(ours, expected, **TOL)
    for got, want in zip(grads(ours, student), grads(expected, student), strict=True):
        torch.testing.assert_close(got, want, **TOL)


def test_dino_gives_the_teacher_no_gradient() -> None:
    student, teacher = views(3, seed=1), views(2, seed=2)
    loss = dino(student, teacher, torch.zeros(DIM, dtype=torch.float64))
    assert all(g.abs().max() == 0 for g in grads(loss, teacher))


def test_dino_of_a_uniform_student_is_log_k_whatever_the_teacher() -> None:
    student = [torch.zeros(BATCH, DIM, dtype=torch.float64) for _ in range(4)]
    loss = dino(student, views(2, seed=4), torch.randn(DIM, dtype=torch.float64))
    torch.testing.assert_close(loss, torch.tensor(math.log(DIM), dtype=torch.float64), **TOL)


def test_dino_centre_shifts_the_teacher_targets() -> None:
    """A centre equal to one teacher row turns that row's target uniform: observed via the loss
    of a student that predicts one class, which then costs the mean of its log-probabilities."""
    student = [torch.zeros(1, DIM, dtype=torch.float64), torch.zeros(1, DIM, dtype=torch.float64)]
    student[1][0, 0] = 1.0
    teacher = views(1, seed=5, rows=1)
    centred = dino(student, teacher, teacher[0].detach()[0], student_temp=1.0)
    log_p = torch.log_softmax(student[1][0], dim=0)
    torch.testing.assert_close(centred, -log_p.mean(), **TOL)
    assert not torch.allclose(
        dino(student, teacher, torch.zeros(DIM, dtype=torch.float64)), centred
    )


@pytest.mark.parametrize(("n_global", "n_local"), [(2, 0), (2, 4), (1, 1)])
def test_swav_equals_the_loop_reference_in_value_and_gradient(n_global: int, n_local: int) -> None:
    scores = views(n_global + n_local, seed=6, scale=0.5)
    codes = [torch.softmax(v.detach() * 4, dim=1) for v in views(n_global, seed=7)]
    ours = swav(scores, codes, temperature=0.1)
    expected = ref.swav(scores, codes, temperature=0.1)
    torch.testing.assert_close(ours, expected, **TOL)
    for got, want in zip(grads(ours, scores), grads(expected, scores), strict=True):
        torch.testing.assert_close(got, want, **TOL)


def test_swav_of_uniform_scores_is_log_k_for_any_codes() -> None:
    scores = [torch.zeros(BATCH, DIM, dtype=torch.float64) for _ in range(3)]
    codes = [torch.softmax(v.detach(), dim=1) for v in views(2, seed=8)]
    loss = swav(scores, codes)
    torch.testing.assert_close(loss, torch.tensor(math.log(DIM), dtype=torch.float64), **TOL)


def test_swav_gives_the_codes_no_gradient() -> None:
    scores = views(3, seed=9)
    codes = views(2, seed=10)
    loss = swav(scores, [torch.softmax(c, dim=1) for c in codes])
    assert all(g.abs().max() == 0 for g in grads(loss, codes))


@pytest.mark.parametrize(("rows", "prototypes", "iterations"), [(6, 5, 3), (4, 9, 1), (7, 3, 5)])
def test_sinkhorn_equals_the_loop_reference(rows: int, prototypes: int, iterations: int) -> None:
    g = torch.Generator().manual_seed(rows)
    scores = 0.4 * torch.randn(rows, prototypes, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        sinkhorn(scores, epsilon=0.05, iterations=iterations),
        ref.sinkhorn(scores, 0.05, iterations),
        **TOL,
    )


def cosine_scores(rows: int, prototypes: int, dim: int, dtype: torch.dtype) -> Tensor:
    g = torch.Generator().manual_seed(prototypes)
    z = F.normalize(torch.randn(rows, dim, generator=g, dtype=torch.float64), dim=1)
    c = F.normalize(torch.randn(prototypes, dim, generator=g, dtype=torch.float64), dim=1)
    return (z @ c.T).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("rows", "prototypes", "dim", "iterations"),
    [(256, 3000, 128, 3), (256, 30, 16, 30)],  # SwAV's regime; few prototypes need more
)
def test_sinkhorn_marginals_are_uniform_to_1e_3(
    dtype: torch.dtype, rows: int, prototypes: int, dim: int, iterations: int
) -> None:
    codes = sinkhorn(cosine_scores(rows, prototypes, dim, dtype), iterations=iterations)
    assert codes.dtype == dtype and not codes.requires_grad
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(rows, dtype=dtype), rtol=0, atol=1e-5)
    per_prototype = codes.sum(dim=0) * prototypes / rows  # 1 when uniform
    assert (per_prototype - 1).abs().max() < 1e-3


def test_sinkhorn_with_three_iterations_is_far_from_uniform_with_few_prototypes() -> None:
    """The check above can fail: the same marginals after 3 iterations at K = 30 are off by >1%."""
    codes = sinkhorn(cosine_scores(256, 30, 16, torch.float64), iterations=3)
    assert (codes.sum(dim=0) * 30 / 256 - 1).abs().max() > 1e-2


def test_sinkhorn_neither_overflows_nor_divides_zero_by_zero_far_beyond_cosines() -> None:
    """Scores of ±100 at ε = 0.05: exp(2000) would overflow without the maximum subtracted, and
    rows far below it underflow to codes of 0 (documented) instead of NaN."""
    scores = 100 * cosine_scores(32, 10, 8, torch.float32)
    codes = sinkhorn(scores)
    assert torch.isfinite(codes).all()
    row_sums = codes.sum(dim=1)
    assert ((row_sums - 1).abs() < 1e-5).logical_or(row_sums == 0).all()
    assert (row_sums == 1).any()


def test_dino_center_equals_the_loop_reference() -> None:
    teacher = [v.detach() for v in views(3, seed=11)]
    center = torch.randn(1, DIM, dtype=torch.float64)
    got = dino_center(center, teacher, momentum=0.7)
    assert got.shape == center.shape
    torch.testing.assert_close(got, ref.dino_center(center, teacher, 0.7).reshape(1, DIM), **TOL)


def test_teacher_temperature_follows_dinos_linspace_then_stays_constant() -> None:
    warmup = np.linspace(0.04, 0.07, 30)
    for step in range(40):
        expected = warmup[step] if step < 30 else 0.07
        assert teacher_temperature(step, 30, 0.04, 0.07) == pytest.approx(expected, abs=1e-15)
    assert teacher_temperature(0, 0) == 0.07
    assert teacher_temperature(0, 1, 0.04, 0.07) == 0.04


def test_dino_module_uses_its_temperatures_and_a_scheduled_teacher_temperature() -> None:
    student, teacher = views(3, seed=12), views(2, seed=13)
    center = torch.zeros(DIM, dtype=torch.float64)
    module = DINOLoss(student_temp=0.2, teacher_temp=0.05)
    torch.testing.assert_close(
        module(student, teacher, center), dino(student, teacher, center, 0.2, 0.05)
    )
    torch.testing.assert_close(
        module(student, teacher, center, teacher_temp=0.07),
        dino(student, teacher, center, 0.2, 0.07),
    )
    scores = views(3, seed=14)
    codes = [torch.softmax(v.detach(), 1) for v in views(2, seed=15)]
    torch.testing.assert_close(SwAVLoss(0.3)(scores, codes), swav(scores, codes, 0.3))
    assert LOSS_MODULES["dino"] is DINOLoss and LOSS_MODULES["swav"] is SwAVLoss


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_finite_float32_outputs(dtype: torch.dtype) -> None:
    student = [(v.detach() * 10).to(dtype).requires_grad_(True) for v in views(4, seed=16)]
    teacher = [v.detach().to(dtype) for v in views(2, seed=17)]
    loss = dino(student, teacher, torch.zeros(DIM, dtype=dtype))
    codes = sinkhorn(cosine_scores(BATCH, DIM, 4, dtype))
    swav_loss = swav(student, list(codes.unsqueeze(0).expand(2, -1, -1)))
    center = dino_center(torch.zeros(DIM, dtype=dtype), teacher)
    for value in (loss, codes, swav_loss):
        assert value.dtype == torch.float32 and torch.isfinite(value).all()
    assert center.dtype == dtype and torch.isfinite(center).all()
    assert all(torch.isfinite(g).all() for g in grads(loss + swav_loss, student))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dino(views(1, 0), views(1, 0), torch.zeros(DIM)), "no pair"),
        (lambda: dino(views(2, 0), views(3, 0), torch.zeros(DIM)), "first views of student_out"),
        (lambda: dino(views(2, 0), views(1, 0), torch.zeros(DIM + 1)), "center must have shape"),
        (lambda: dino(views(2, 0)[0], views(1, 0), torch.zeros(DIM)), "list of"),
        (lambda: dino(views(2, 0), views(1, 0), torch.zeros(DIM), teacher_temp=0), "teacher_temp"),
        (lambda: swav([torch.zeros(3, DIM), torch.zeros(4, DIM)], views(1, 0)), "same shape"),
        (lambda: sinkhorn(torch.zeros(3, 4), iterations=0), "iterations"),
        (lambda: sinkhorn(torch.zeros(3, 4), epsilon=-1.0), "epsilon"),
        (lambda: dino_center(torch.zeros(DIM), views(1, 0), momentum=1.5), "momentum"),
        (lambda: teacher_temperature(-1, 3), "step"),
    ],
)
def test_bad_input_is_a_one_line_error_naming_the_value(call, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)
