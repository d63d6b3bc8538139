"""Optimisers and schedules: each schedule against a closed form or the formula of the library
that a seed used, decay groups, and LARS / LARC by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from contrastkit.train.config import ConfigError, build_config
from contrastkit.train.optim import (
    LARS,
    OPTIMIZERS,
    LRSchedule,
    build_optimizer,
    lr_scheduler,
    optimization_from_config,
    schedule_from_config,
    split_decay_groups,
)

TOTAL, WARMUP = 110, 10


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))


def warmup_cosine(step: int, total: int, warmup: int, final_ratio: float = 0.0) -> float:
    return LRSchedule(total=total, warmup=warmup, final_ratio=final_ratio)(step)


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


def _hf_cosine_with_warmup(step: int, warmup: int, total: int, num_cycles: float) -> float:
    """transformers.get_cosine_schedule_with_warmup's lr_lambda, transcribed."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def test_partial_cosine_after_a_zero_start_warmup_is_hugging_faces_schedule() -> None:
    """Seed 000: warm-up from 0 whose peak comes after it, then 0.3 cycles: ends at 34.5%."""
    total, warmup = 400, 20
    schedule = LRSchedule(
        total=total, warmup=warmup, warmup_start=0.0, ends_at_peak=False, cycles=0.3
    )
    for step in range(total + 1):
        assert schedule(step) == pytest.approx(_hf_cosine_with_warmup(step, warmup, total, 0.3))
    assert schedule(total) == pytest.approx(0.5 * (1 + math.cos(0.6 * math.pi)))
    assert schedule(total) == pytest.approx(0.3455, abs=1e-4)


def _bolts_warmup_cosine(epoch: int, base: float, start: float, warmup: int, epochs: int) -> float:
    """pl_bolts LinearWarmupCosineAnnealingLR's closed form (eta_min 0), transcribed."""
    if epoch < warmup:
        return start + epoch * (base - start) / (warmup - 1)
    return 0.5 * base * (1 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))


def test_warmup_from_a_start_lr_peaks_at_its_last_epoch_as_pl_bolts() -> None:
    """Seed 002: 10 warm-up epochs from 0.003 to 0.3, then a cosine over the other 90."""
    schedule = LRSchedule(total=100, warmup=10, warmup_start=0.003 / 0.3)
    for epoch in range(100):
        assert 0.3 * schedule(epoch) == pytest.approx(
            _bolts_warmup_cosine(epoch, 0.3, 0.003, 10, 100)
        )


def test_constant_and_step_schedules() -> None:
    """constant: the peak after warm-up; step: ×gamma at each milestone reached (MultiStepLR)."""
    constant = LRSchedule(total=50, warmup=5, kind="constant")
    assert [constant(s) for s in (4, 5, 30, 49)] == pytest.approx([1.0] * 4)
    step = LRSchedule(total=100, kind="step", milestones=(60, 80), gamma=0.2)
    param = nn.Parameter(torch.zeros(1))
    reference = torch.optim.SGD([param], lr=1.0)
    multistep = torch.optim.lr_scheduler.MultiStepLR(reference, [60, 80], gamma=0.2)
    for epoch in range(100):
        assert step(epoch) == pytest.approx(reference.param_groups[0]["lr"])
        reference.step()
        multistep.step()


def test_per_epoch_scheduler_holds_the_lr_through_each_epoch() -> None:
    """steps_per_unit=k: the lr changes only every k optimiser steps, following the schedule."""
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.5)
    schedule = LRSchedule(total=6, warmup=2)
    scheduler = lr_scheduler(optimizer, schedule, steps_per_unit=4)
    seen = []
    for _ in range(24):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.5 * schedule(epoch) for epoch in range(6) for _ in range(4)]
    assert seen == pytest.approx(expected)
    assert seen[4:12] == [0.5] * 8  # epochs 1 and 2: the warm-up's end and the cosine's start


def _config_schedule(**values: object) -> tuple[LRSchedule, int]:
    return schedule_from_config(build_config([{"epochs": 10, **values}]), total_steps=200)


def test_config_keys_reach_the_schedule() -> None:
    """Per-epoch units, warm-up in steps or epochs, start lr and final lr as fractions of lr."""
    schedule, per_unit = _config_schedule(
        schedule_interval="epoch", warmup_epochs=2, lr=0.5, warmup_start_lr=0.01, lr_final=0.01
    )
    assert per_unit == 20 and schedule.total == 10 and schedule.warmup == 2
    assert schedule.warmup_start == pytest.approx(0.02)
    assert schedule.final_ratio == pytest.approx(0.02)
    schedule, per_unit = _config_schedule(warmup_steps=7, lr_final_ratio=0.001)
    assert per_unit == 1 and schedule.total == 200 and schedule.warmup == 7
    assert schedule.final_ratio == 0.001
    schedule, _ = _config_schedule(schedule="step", lr_milestones="[6, 8]", lr_gamma=0.2)
    assert schedule.milestones == (6, 8) and schedule.gamma == 0.2


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"schedule": "linear"}, "'linear'"),
        ({"schedule_interval": "batch"}, "'batch'"),
        ({"schedule": "step"}, "lr_milestones"),
        ({"schedule": "step", "lr_milestones": "80,60"}, "80,60"),
        ({"lr_milestones": "60"}, "lr_milestones='60'"),
        ({"schedule_interval": "epoch", "warmup_steps": 5}, "warmup_steps=5"),
        ({"schedule_interval": "epoch", "warmup_epochs": 0.5}, "warmup_epochs=0.5"),
        ({"lr_final": 0.1, "lr_final_ratio": 0.1}, "lr_final=0.1"),
        ({"warmup_start_lr": 5.0}, "warmup_start_lr=5.0"),
        ({"lars_eta": 0}, "lars_eta=0"),
        ({"zero_init_residual": True}, "small-cnn"),
        ({"projector_out_bn": "batch"}, "'batch'"),
        ({"predictor_layers": 0}, "predictor_layers=0"),
    ],
)
def test_bad_optimisation_and_head_values_are_one_line_errors(values: dict, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_config([values])
    assert named in str(error.value) and "\n" not in str(error.value)


def test_scheduler_leaves_fixed_lr_groups_at_their_base_rate() -> None:
    """Groups marked `fixed_lr` (SimSiam's predictor) keep their base lr; others are scheduled."""
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD(
        [{"params": [a]}, {"params": [b], "lr": 0.05, "fixed_lr": True}], lr=0.2
    )
    scheduler = lr_scheduler(optimizer, LRSchedule(total=TOTAL, warmup=WARMUP))
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


def test_weight_decay_on_every_parameter_when_bias_and_norm_are_not_excluded() -> None:
    """exclude_bias_norm=false: one group, biases and BN included, with weight decay."""
    net = _net()
    (group,) = split_decay_groups(net.named_parameters(), 1e-4, exclude_bias_norm=False)
    assert len(group["params"]) == len(list(net.parameters()))
    assert group["weight_decay"] == 1e-4 and "lars_exclude" not in group


def test_config_builds_the_optimiser_with_its_groups_eta_and_eps() -> None:
    """The config's keys reach the optimiser: groups by exclusion, LARS eta/clip, Adam eps."""
    net = _net()
    roles = [{"named": list(net.named_parameters())}]
    values = {"optimizer": "lars", "lars_eta": 0.001, "lars_clip": True}
    config = build_config([{**values, "exclude_bias_norm": False}])
    optimizer, _ = optimization_from_config(config, roles, total_steps=10)
    assert isinstance(optimizer, LARS) and optimizer.clip
    assert [(len(g["params"]), g["eta"]) for g in optimizer.param_groups] == [(5, 0.001)]
    config = build_config([{"optimizer": "adamw", "adam_eps": 1e-6}])
    optimizer, _ = optimization_from_config(config, roles, total_steps=10)
    assert [g["eps"] for g in optimizer.param_groups] == [1e-6, 1e-6]
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 3]


def _larc_reference(
    w: torch.Tensor, grads: list[torch.Tensor], lrs: list[float], wd: float, eta: float
) -> torch.Tensor:
    """pl_bolts LARSWrapper(clip=True) over SGD(momentum 0.9), written out in float64."""
    w, buf = w.double().clone(), None
    for g, lr in zip(grads, lrs, strict=True):
        g = g.double()
        local_lr = eta * w.norm() / (g.norm() + w.norm() * wd + 1e-8)
        local_lr = min(float(local_lr) / lr, 1.0)
        u = (g + wd * w) * local_lr
        buf = u if buf is None else 0.9 * buf + u
        w = w - lr * buf
    return w


@pytest.mark.parametrize("lr", [0.3, 1e-4])
def test_larc_clips_the_local_lr_at_the_base_lr(lr: float) -> None:
    """Seed 002's LARC: at lr 0.3 the trust ratio binds; at 1e-4 the clip does (plain SGD)."""
    torch.manual_seed(2)
    net = nn.Linear(6, 4)
    grads = [(torch.randn(4, 6), torch.randn(4)) for _ in range(3)]
    start = [p.detach().clone() for p in (net.weight, net.bias)]
    wd, eta = 1e-4, 0.02
    groups = split_decay_groups(net.named_parameters(), wd, exclude_bias_norm=False)
    optimizer = build_optimizer("lars", groups, lr, wd, 0.9, lars_eta=eta, lars_clip=True)
    for g_weight, g_bias in grads:
        net.weight.grad, net.bias.grad = g_weight.clone(), g_bias.clone()
        optimizer.step()
    for param, begin, index in ((net.weight, start[0], 0), (net.bias, start[1], 1)):
        expected = _larc_reference(begin, [g[index] for g in grads], [lr] * 3, wd, eta)
        torch.testing.assert_close(param.detach().double(), expected, rtol=1e-5, atol=1e-7)
    # A hand computation of the first step's factor on the weight.
    first = eta * start[0].norm() / (grads[0][0].norm() + wd * start[0].norm() + 1e-8) / lr
    assert (float(first) < 1) == (lr == 0.3)


def test_zero_init_residual_zeroes_the_last_bn_of_every_block() -> None:
    """SimSiam's option: each BasicBlock's bn2 (Bottleneck's bn3) scale is 0, others are 1."""
    from contrastkit.train.factory import method_from_config

    config = build_config([{"backbone": "resnet18", "zero_init_residual": True}])
    backbone = method_from_config(config, 32, 3, 10).backbone
    blocks = [m for m in backbone.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 8
    assert all(float(b.bn2.weight.detach().abs().max()) == 0 for b in blocks)
    assert all(float(b.bn1.weight.detach().min()) == 1 for b in blocks)
    plain = method_from_config(build_config([{"backbone": "resnet18"}]), 32, 3, 10).backbone
    assert all(
        float(m.bn2.weight.detach().min()) == 1
        for m in plain.modules()
        if type(m).__name__ == "BasicBlock"
    )
