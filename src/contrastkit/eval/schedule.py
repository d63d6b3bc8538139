"""The optimiser and learning-rate schedule of a trained head (linear, finetune, sweep).

The schedule is a factor of the peak lr, a function of the fractional epoch, stepped once per
optimiser step: a linear warm-up from 0 over `warmup_epochs`, then constant, step decay
(×gamma after each milestone epoch) or a cosine of `cosine_cycles` cycles (Hugging Face's
`get_cosine_schedule_with_warmup`: 0.5 cycles ends at 0, seed 000's 0.3 at 34.5%).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .errors import EvaluationError

DECAY_AT = (0.6, 0.8)
"""Fractions of the epochs after which the step schedule decays when no milestones are given."""


def lr_factor(
    epochs: int,
    schedule: str = "step",
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
    warmup_epochs: float = 0.0,
    cosine_cycles: float = 0.5,
) -> Callable[[float], float]:
    """The factor of the peak lr at fractional epoch `t` (0 ≤ t < epochs)."""
    steps = milestones or tuple(round(f * epochs) for f in DECAY_AT)

    def factor(t: float) -> float:
        if t < warmup_epochs:
            return t / warmup_epochs
        if schedule == "constant":
            return 1.0
        if schedule == "step":
            return gamma ** sum(1 for m in steps if math.floor(t) >= m)
        progress = (t - warmup_epochs) / max(1e-12, epochs - warmup_epochs)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * cosine_cycles * progress)))

    return factor


def check_training(settings: dict[str, Any]) -> None:
    """EvaluationError naming the first training option out of range."""
    for key in ("epochs", "batch_size"):
        if settings[key] < 1:
            raise EvaluationError(f"{key}={settings[key]}: must be >= 1")
    if not settings.get("lr", 1.0) > 0:  # the sweep checks its own grid of lrs
        raise EvaluationError(f"lr={settings['lr']}: must be > 0")
    for key in ("weight_decay", "momentum", "warmup_epochs"):
        if settings.get(key, 0) < 0:
            raise EvaluationError(f"{key}={settings[key]}: must be >= 0")
    if not 0 < settings["gamma"] <= 1:
        raise EvaluationError(f"gamma={settings['gamma']}: must be in (0, 1]")
    if settings["selection"] == "best" and not 0 < settings["val_fraction"] < 1:
        raise EvaluationError(
            f"val_fraction={settings['val_fraction']}: selection=best needs it in (0, 1)"
        )


def build_optimizer(
    name: str,
    parameters: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    adam_eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """SGD with momentum, or AdamW (decoupled weight decay)."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, eps=adam_eps)
    raise EvaluationError(f"optimizer={name!r}: valid: sgd, adamw")


def settings_lr_factor(settings: dict[str, Any]) -> Callable[[float], float]:
    """`lr_factor` of a protocol's settings (epochs, schedule, milestones, gamma, warm-up,
    cosine cycles)."""
    return lr_factor(
        settings["epochs"],
        settings["schedule"],
        settings["milestones"],
        settings["gamma"],
        settings["warmup_epochs"],
        settings["cosine_cycles"],
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, settings: dict[str, Any]
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of `settings`, stepped after each optimiser step."""
    factor = settings_lr_factor(settings)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: factor(step / max(1, steps_per_epoch))
    )
