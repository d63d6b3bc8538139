"""The weight-decay schedule (`weight_decay_final`): DINO's per-step cosine, applied to the
decaying groups only, observed in the updates of a run, and exact across a resume. And DINO's
minimum lr, which `lr_final` already gives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.train.config import build_config
from contrastkit.train.optim import schedule_from_config
from contrastkit.train.run import pretrain
from contrastkit.train.weight_decay import WeightDecaySchedule

from .small_run import small_config
from .step_recorder import StepRecorder
from .test_resume import _StopAfterFirstEpoch, _weights


def _dino_cosine_scheduler(
    base: float, final: float, epochs: int, per_epoch: int, warmup_epochs: int = 0
) -> list[float]:
    """DINO's per-step schedule (utils.py `cosine_scheduler`, its lr_schedule with min_lr as
    `final` and its wd_schedule without warm-up), from its formula: W = warmup_epochs·per_epoch
    steps evenly spaced from 0 to `base` inclusive, then for the remaining N steps
    final + ½(base − final)(1 + cos(π·i/N)), i = 0..N−1."""
    warmup = warmup_epochs * per_epoch
    ramp = np.linspace(0.0, base, warmup) if warmup else np.zeros(0)
    decay_steps = epochs * per_epoch - warmup
    decay = [
        final + (base - final) * (1 + math.cos(math.pi * i / decay_steps)) / 2
        for i in range(decay_steps)
    ]
    return [*ramp.tolist(), *decay]


def test_the_schedule_is_dinos_wd_schedule_step_by_step() -> None:
    epochs, per_epoch = 5, 7
    schedule = WeightDecaySchedule(0.04, 0.4, epochs * per_epoch)
    expected = _dino_cosine_scheduler(0.04, 0.4, epochs, per_epoch)
    for step, value in enumerate(expected):
        assert schedule(step) == pytest.approx(float(value), rel=1e-12)


def test_the_cosine_starts_at_weight_decay_is_midway_at_half_and_ends_at_the_final_value() -> None:
    schedule = WeightDecaySchedule(0.04, 0.4, 100)
    assert schedule(0) == 0.04
    assert schedule(50) == pytest.approx(0.22)
    assert schedule(25) == pytest.approx(0.4 - 0.18 * (1 + math.cos(math.pi / 4)))
    assert schedule(100) == pytest.approx(0.4) and schedule(150) == pytest.approx(0.4)


def test_lr_final_is_dinos_min_lr_after_its_warmup_from_zero() -> None:
    """DINO's lr_schedule: linspace(0, lr, warm-up steps), then a cosine to min_lr (1e-6), per
    step. `lr_final` with a warm-up from 0 that ends at the peak gives it value for value."""
    epochs, per_epoch, lr, min_lr = 20, 13, 0.0005 * 512 / 256, 1e-6
    config = build_config(
        [
            {
                "epochs": epochs,
                "lr": lr,
                "lr_final": min_lr,
                "warmup_epochs": 4,
                "warmup_start_lr": 0.0,
                "warmup_ends_at_peak": True,
                "schedule_interval": "step",
            }
        ]
    )
    schedule, per_unit = schedule_from_config(config, total_steps=epochs * per_epoch)
    assert per_unit == 1
    expected = _dino_cosine_scheduler(lr, min_lr, epochs, per_epoch, warmup_epochs=4)
    for step, value in enumerate(expected):
        assert lr * schedule(step) == pytest.approx(float(value), rel=1e-9, abs=1e-15)
    assert lr * schedule(epochs * per_epoch) == pytest.approx(min_lr)


def _run(tmp_path: Path, **values: object) -> StepRecorder:
    recorder = StepRecorder()
    settings = {
        "optimizer": "sgd",
        "lr": 0.5,
        "momentum": 0.0,
        "schedule": "constant",
        "warmup_epochs": 0,
        "probe": False,
        "weight_decay": 0.04,
        **values,
    }
    pretrain(small_config(tmp_path, **settings), callbacks=[recorder])
    return recorder


def test_each_update_decays_the_weights_by_this_steps_value_and_never_biases_and_norms(
    tmp_path: Path,
) -> None:
    """SGD without momentum: Δw = −lr·(g + wd(step)·w) for weights, −lr·g for biases and norm
    parameters; wd(step) is the cosine over the run's 11 steps from 0.04 to 0.4."""
    recorder = _run(tmp_path, weight_decay_final=0.4)
    schedule = WeightDecaySchedule(0.04, 0.4, 11)
    assert len(recorder.steps) == 11
    decaying = {n for n, g in recorder.group.items() if g == 0}
    assert decaying and len(decaying) < len(recorder.group)  # weights; biases and norms apart
    for index, step in enumerate(recorder.steps):
        wd = schedule(index)
        assert step.weight_decays == [pytest.approx(wd, rel=1e-12), 0.0]
        for name, grad in step.grads.items():
            decay = wd * step.before[name] if name in decaying else 0.0
            torch.testing.assert_close(
                step.after[name] - step.before[name],
                -0.5 * (grad + decay),
                rtol=1e-4,
                atol=1e-7,
                msg=lambda m, name=name, index=index: f"step {index}, {name}: {m}",
            )


def test_without_weight_decay_final_the_weight_decay_is_constant(tmp_path: Path) -> None:
    recorder = _run(tmp_path)
    assert all(step.weight_decays == [0.04, 0.0] for step in recorder.steps)


@pytest.mark.slow
def test_resume_with_clipping_and_the_schedule_reproduces_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    """Both are functions of the gradients and the step alone: a run stopped after its first
    epoch and resumed ends with the uninterrupted run's weights, bit for bit."""
    extra = {
        "epochs": 2,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.04,
        "weight_decay_final": 0.4,
        "grad_clip": 0.1,
        "grad_clip_mode": "per_parameter",
    }
    pretrain(small_config(tmp_path / "straight", **extra))
    pretrain(small_config(tmp_path / "stopped", **extra), callbacks=[_StopAfterFirstEpoch()])
    checkpoint = torch.load(tmp_path / "stopped" / "last.ckpt", weights_only=False)
    halfway = checkpoint["optimizer_states"][0]["param_groups"][0]["weight_decay"]
    assert halfway == pytest.approx(WeightDecaySchedule(0.04, 0.4, 22)(10))  # the last step's
    pretrain(small_config(tmp_path / "stopped", resume=True, **extra))
    straight = _weights(tmp_path / "straight" / "last.ckpt")
    resumed = _weights(tmp_path / "stopped" / "last.ckpt")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)
