"""Optimisers and schedule: the warm-up + cosine closed form, decay groups, and LARS by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from contrastkit.train.optim import (
    LARS,
    OPTIMIZERS,
    build_optimizer,
    split_decay_groups,
    warmup_cosine,
    warmup_cosine_scheduler,
)

TOTAL, WARMUP = 110, 10


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))


def test_warmup_is_linear_and_reaches_the_peak_at_its_last_step() -> None:
    """Step s of the warm-up takes (s + 1) / warmup: never a zero-rate step, peak at its end."""
    assert warmup_cosine(0, TOTAL, WARMUP) == pytest.approx(1 / WARMUP)
    assert warmup_cosine(4, TOTAL, WARMUP) == pytest.approx(5 / WARMUP)
    assert warmup_cosine(WARMUP - 1, TOTAL, WARMUP) == pytest.approx(1.0)
    assert warmup_cosine(WARMUP, TOTAL, WARMUP) == pytest.approx(1.0)


@pytest.mark.parametrize("final_ratio", [0.0, 0.1])
def test_cosine_is_half_way_at_its_midpoint_and_ends_at_the_final_ratio(final_ratio: float) -> None:
    """After warm-up: final + (1 − final)·½(1 + cos(π·progress)), clamped at the end."""
    middle = WARMUP + (TOTAL - WARMUP) // 2
    assert warmup_cosine(middle, TOTAL, WARMUP, final_ratio) == pytest.approx(
        final_ratio + (1 - final_ratio) / 2
    )
    quarter = WARMUP + (TOTAL - WARMUP) // 4
    expected = final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi / 4))
    assert warmup_cosine(quarter, TOTAL, WARMUP, final_ratio) == pytest.approx(expected)
    assert warmup_cosine(TOTAL, TOTAL, WARMUP, final_ratio) == pytest.approx(final_ratio)
    assert warmup_cosine(TOTAL + 50, TOTAL, WARMUP, final_ratio) == pytest.approx(final_ratio)


def test_without_warmup_the_schedule_starts_at_the_peak() -> None:
    """warmup_steps=0: the cosine starts at step 0, so its midpoint is half the total."""
    assert warmup_cosine(0, TOTAL, 0) == pytest.approx(1.0)
    assert warmup_cosine(TOTAL // 2, TOTAL, 0) == pytest.approx(0.5)


def test_scheduler_leaves_fixed_lr_groups_at_their_base_rate() -> None:
    """Groups marked `fixed_lr` (SimSiam's predictor) keep their base lr; others are scheduled."""
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD(
        [{"params": [a]}, {"params": [b], "lr": 0.05, "fixed_lr": True}], lr=0.2
    )
    scheduler = warmup_cosine_scheduler(optimizer, TOTAL, WARMUP)
    for step in range(TOTAL):
        scheduled, fixed = (g["lr"] for g in optimizer.param_groups)
        assert scheduled == pytest.approx(0.2 * warmup_cosine(step, TOTAL, WARMUP))
        assert fixed == pytest.approx(0.05)
        optimizer.step()
        scheduler.step()


def test_biases_and_norm_parameters_take_no_weight_decay() -> None:
    """Biases and 1-D (norm) parameters go to the no-decay, LARS-excluded group."""
    net = _net()
    decay, no_decay = split_decay_groups(net.named_parameters(), 1e-4, fixed_lr=True)
    names = {id(p): n for n, p in net.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {"0.weight", "2.weight"}
    assert {names[id(p)] for p in no_decay["params"]} == {"0.bias", "1.weight", "1.bias"}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (1e-4, 0.0)
    assert no_decay["lars_exclude"] and "lars_exclude" not in decay
    assert decay["fixed_lr"] and no_decay["fixed_lr"]


def test_frozen_parameters_and_empty_groups_are_left_out() -> None:
    """Parameters without gradient join no group, and a group left empty is dropped."""
    net = _net()
    for name, param in net.named_parameters():
        param.requires_grad_(name.endswith("weight") and param.ndim == 2)
    groups = split_decay_groups(net.named_parameters(), 1e-4)
    assert len(groups) == 1
    assert [p.shape for p in groups[0]["params"]] == [(3, 4), (2, 3)]


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("sgd", torch.optim.SGD),
        ("lars", LARS),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
    ],
)
def test_build_optimizer_by_name_keeps_the_groups_weight_decay(name: str, cls: type) -> None:
    """Each name builds its optimiser; the no-decay group keeps weight decay 0 in every one."""
    assert name in OPTIMIZERS
    groups = split_decay_groups(_net().named_parameters(), 1e-3)
    optimizer = build_optimizer(name, groups, lr=0.1, weight_decay=1e-3, momentum=0.8)
    assert type(optimizer) is cls
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-3, 0.0]
    assert all(g["lr"] == 0.1 for g in optimizer.param_groups)
    if name in ("sgd", "lars"):
        assert all(g["momentum"] == 0.8 for g in optimizer.param_groups)
    excluded = [g.get("lars_exclude") for g in optimizer.param_groups]
    assert excluded == ([False, True] if name == "lars" else [None, None])


def test_unknown_optimizer_is_refused_by_name() -> None:
    """An unknown name is a ValueError that names it and lists the valid ones."""
    groups = split_decay_groups(_net().named_parameters(), 1e-3)
    with pytest.raises(ValueError, match=r"unknown optimizer 'rmsprop'; valid: sgd, lars"):
        build_optimizer("rmsprop", groups, lr=0.1, weight_decay=1e-3)


def _lars_reference(
    w: torch.Tensor,
    grads: list[torch.Tensor],
    lr: float,
    momentum: float,
    wd: float,
    eta: float,
    adapt: bool,
) -> torch.Tensor:
    """LARS written out in float64: u = g + wd·w, scaled by η‖w‖/‖u‖, SGD momentum on top."""
    w, buf = w.double().clone(), None
    for g in grads:
        u = g.double() + wd * w
        if adapt:
            u = u * (eta * w.norm() / u.norm())
        buf = u if buf is None else momentum * buf + u
        w = w - lr * buf
    return w


def test_lars_matches_the_hand_computed_steps() -> None:
    """Two steps: weights take trust-ratio-scaled updates, excluded biases plain SGD momentum."""
    net = nn.Linear(5, 3)
    torch.manual_seed(1)
    grads = [(torch.randn(3, 5), torch.randn(3)) for _ in range(2)]
    start = (net.weight.detach().clone(), net.bias.detach().clone())
    lr, momentum, wd, eta = 0.7, 0.9, 0.05, 0.02
    groups = split_decay_groups(net.named_parameters(), wd)
    optimizer = build_optimizer("lars", groups, lr=lr, weight_decay=wd, momentum=momentum)
    for g_weight, g_bias in grads:
        net.weight.grad, net.bias.grad = g_weight.clone(), g_bias.clone()
        optimizer.step()
    weight = _lars_reference(start[0], [g for g, _ in grads], lr, momentum, wd, eta, True)
    bias = _lars_reference(start[1], [g for _, g in grads], lr, momentum, 0.0, eta, False)
    torch.testing.assert_close(net.weight.detach().double(), weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(net.bias.detach().double(), bias, rtol=1e-6, atol=1e-7)
    # The trust ratio really acted: the weight moved far less than a plain SGD step would.
    plain = _lars_reference(start[0], [g for g, _ in grads], lr, momentum, wd, eta, False)
    assert (weight - start[0].double()).norm() < 0.1 * (plain - start[0].double()).norm()


def test_lars_keeps_a_zero_weight_or_zero_gradient_at_trust_one() -> None:
    """‖w‖ = 0 or ‖g‖ = 0 would give a 0 or undefined ratio; the step falls back to plain SGD."""
    zero_weight = nn.Parameter(torch.zeros(2, 2))
    zero_grad = nn.Parameter(torch.ones(2, 2))
    optimizer = LARS([zero_weight, zero_grad], lr=0.5, momentum=0.0)
    zero_weight.grad = torch.full((2, 2), 2.0)
    zero_grad.grad = torch.zeros(2, 2)
    optimizer.step()
    torch.testing.assert_close(zero_weight.detach(), torch.full((2, 2), -1.0))
    torch.testing.assert_close(zero_grad.detach(), torch.ones(2, 2))


def test_lars_skips_parameters_without_gradient_and_returns_the_closure_loss() -> None:
    """A parameter with no gradient is neither moved nor given a momentum buffer."""
    param = nn.Parameter(torch.ones(3))
    optimizer = LARS([param], lr=0.1)
    assert optimizer.step(lambda: torch.tensor(2.5)) == 2.5
    torch.testing.assert_close(param.detach(), torch.ones(3))
    assert not optimizer.state[param]
