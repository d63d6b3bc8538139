"""EMA target: the closed-form update on known tensors, freezing, buffers, and the schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from contrastkit.models import EMA, EMASchedule, cosine_momentum


def online_net() -> nn.Sequential:
    """Linear(2→2) then BatchNorm1d(2), with known dyadic weights so the update is exact."""
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net[0].bias.copy_(torch.tensor([-1.0, 1.0]))
        net[1].weight.fill_(2.0)
        net[1].bias.fill_(0.5)
    return net


def test_target_is_a_frozen_copy() -> None:
    online = online_net()
    ema = EMA(online)
    for target_param, online_param in zip(
        ema.target.parameters(), online.parameters(), strict=True
    ):
        assert not target_param.requires_grad
        assert online_param.requires_grad
        assert torch.equal(target_param, online_param)
        assert target_param.data_ptr() != online_param.data_ptr()


def test_update_is_the_closed_form_on_known_tensors() -> None:
    online = online_net()
    ema = EMA(online)
    with torch.no_grad():
        ema.target[0].weight.copy_(torch.tensor([[5.0, 6.0], [7.0, 8.0]]))
        ema.target[0].bias.zero_()
    ema.update(0.75)
    # 0.75·target + 0.25·online
    expected_weight = torch.tensor([[4.0, 5.0], [6.0, 7.0]])
    expected_bias = torch.tensor([-0.25, 0.25])
    assert torch.equal(ema.target[0].weight, expected_weight)
    assert torch.equal(ema.target[0].bias, expected_bias)
    assert torch.equal(ema.target[1].weight, torch.full((2,), 2.0))


def test_update_matches_the_formula_on_random_tensors() -> None:
    torch.manual_seed(0)
    online = nn.Linear(4, 3)
    ema = EMA(online)
    with torch.no_grad():
        for param in ema.target.parameters():
            param.normal_()
    old = [param.clone() for param in ema.target.parameters()]
    ema.update(0.9)
    for new, previous, current in zip(
        ema.target.parameters(), old, online.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.9 * previous + 0.1 * current, rtol=0, atol=1e-6)


def test_momentum_one_leaves_the_target_unchanged_and_zero_copies_online() -> None:
    online = online_net()
    ema = EMA(online)
    with torch.no_grad():
        ema.target[0].weight.mul_(3.0)
    frozen = ema.target[0].weight.clone()
    ema.update(1.0)
    assert torch.equal(ema.target[0].weight, frozen)
    ema.update(0.0)
    assert torch.equal(ema.target[0].weight, online[0].weight)


def test_buffers_are_copied_not_averaged() -> None:
    online = online_net()
    ema = EMA(online)
    online(torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]))  # train-mode BN statistics
    ema.update(0.99)
    for target_buffer, online_buffer in zip(ema.target.buffers(), online.buffers(), strict=True):
        assert torch.equal(target_buffer, online_buffer)
    assert int(ema.target[1].num_batches_tracked) == 1


def test_training_the_online_network_gives_the_target_no_gradient() -> None:
    online = online_net()
    ema = EMA(online)
    inputs = torch.randn(4, 2)
    target_out = ema(inputs)
    assert not target_out.requires_grad
    (online(inputs) - target_out).pow(2).sum().backward()
    assert all(param.grad is None for param in ema.target.parameters())
    assert all(param.grad is not None for param in online.parameters())


def test_only_the_target_is_registered() -> None:
    online = online_net()
    ema = EMA(online)
    assert len(list(ema.parameters())) == len(list(online.parameters()))
    assert all(key.startswith("target.") for key in ema.state_dict())


@pytest.mark.parametrize("momentum", [-0.1, 1.5])
def test_momentum_outside_unit_interval_is_rejected(momentum: float) -> None:
    with pytest.raises(ValueError, match=str(momentum)):
        EMA(online_net()).update(momentum)


def test_cosine_momentum_endpoints_and_midpoint() -> None:
    assert cosine_momentum(0, 100) == pytest.approx(0.99, abs=1e-12)
    assert cosine_momentum(100, 100) == 1.0
    assert cosine_momentum(50, 100) == pytest.approx(0.995, abs=1e-12)
    assert cosine_momentum(25, 100) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)


def test_cosine_momentum_rises_monotonically_and_holds_after_the_end() -> None:
    values = [cosine_momentum(step, 10, base=0.9, final=0.999) for step in range(15)]
    assert values[0] == pytest.approx(0.9)
    assert all(a < b for a, b in itertools.pairwise(values[:11]))
    assert values[10:] == [pytest.approx(0.999)] * 5


@pytest.mark.parametrize(("step", "total"), [(-1, 10), (0, 0)])
def test_cosine_momentum_rejects_bad_steps(step: int, total: int) -> None:
    with pytest.raises(ValueError, match=str(min(step, total))):
        cosine_momentum(step, total)


# --- schedule options (ema_final, ema_schedule, ema_update_after_step, ema_update_every,
# ema_buffers), against values computed by hand --------------------------------------------


def scalar_ema() -> EMA:
    """A one-weight online network (w = 1) whose target starts at 0, and a BN-like buffer."""
    online = nn.Linear(1, 1, bias=False)
    online.register_buffer("stat", torch.tensor([8.0]))
    with torch.no_grad():
        online.weight.fill_(1.0)
    ema = EMA(online)
    with torch.no_grad():
        ema.target.weight.zero_()
        ema.target.stat.zero_()
    return ema


def test_constant_schedule_copies_before_the_start_step_then_updates_every_nth() -> None:
    schedule = EMASchedule(base=0.5, schedule="constant", update_after_step=2, update_every=2)
    ema = scalar_ema()
    seen = []
    for step in range(6):
        with torch.no_grad():
            ema.target.weight.zero_()
        schedule.apply(ema, step, 100)
        seen.append(ema.target.weight.item())
    # steps 0, 1 copy (w = 1); then steps s with (s + 1) % 2 == 0 move 0 → 0.5·0 + 0.5·1
    assert seen == [1.0, 1.0, 0.0, 0.5, 0.0, 0.5]


def test_cosine_schedule_reaches_ema_final() -> None:
    schedule = EMASchedule(base=0.9, final=0.99)
    assert schedule.momentum(0, 10) == pytest.approx(0.9)
    assert schedule.momentum(10, 10) == pytest.approx(0.99)
    assert EMASchedule(base=0.9, schedule="constant").momentum(5, 10) == 0.9


def test_buffers_average_with_the_same_momentum_or_copy() -> None:
    ema = scalar_ema()
    EMASchedule(base=0.75, schedule="constant", buffers="average").apply(ema, 0, 10)
    assert ema.target.stat.item() == 0.25 * 8.0 and ema.target.weight.item() == 0.25
    ema = scalar_ema()
    EMASchedule(base=0.75, schedule="constant").apply(ema, 0, 10)
    assert ema.target.stat.item() == 8.0


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"base": 1.5}, "ema_base=1.5"),
        ({"final": -0.1}, "ema_final=-0.1"),
        ({"schedule": "linear"}, "'linear'"),
        ({"update_every": 0}, "ema_update_every=0"),
        ({"update_after_step": -1}, "ema_update_after_step=-1"),
        ({"buffers": "mean"}, "'mean'"),
    ],
)
def test_bad_schedule_options_are_named(options: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        EMASchedule(**options)
