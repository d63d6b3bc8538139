"""Checks of the method options of a pretraining configuration (EMA, queue, pair reduction,
DINO's centre and teacher temperature), and what they mean for the builders."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..models.ema import EMASchedule
from .pairing import CenteredTarget
from .spec import METHODS, PAIR_REDUCTIONS

CENTERING_KEYS = (
    "center_momentum",
    "teacher_temp_start",
    "teacher_temp_warmup_epochs",
    "teacher_temp_warmup_steps",
)
"""The configuration keys of DINO's TeacherCentering (`CenteredTarget.from_config`)."""


def check_method_options(config: Any) -> None:
    """Raise ValueError naming the first invalid method option and what would be valid."""
    ema_schedule(config)  # EMASchedule checks its own values
    if config.queue_size is not None and config.queue_size < 1:
        raise ValueError(f"queue_size={config.queue_size}: must be >= 1")
    if config.pair_reduction is not None and config.pair_reduction not in PAIR_REDUCTIONS:
        raise ValueError(
            f"unknown pair_reduction {config.pair_reduction!r}; valid: {', '.join(PAIR_REDUCTIONS)}"
        )


def ema_schedule(config: Any) -> EMASchedule:
    """The EMA target's schedule from the `ema_*` options."""
    return EMASchedule(
        ema_base(config),
        config.ema_final,
        config.ema_schedule,
        config.ema_update_after_step,
        config.ema_update_every,
        config.ema_buffers,
    )


def ema_base(config: Any) -> float:
    """The EMA target's starting momentum: `ema_base`, else the method's default."""
    return METHODS[config.method].ema_base if config.ema_base is None else config.ema_base


def check_centering_options(config: Any) -> None:
    """DINO's keys: values in range, and set only for a method with a teacher centre."""
    if not 0.0 <= config.center_momentum <= 1.0:
        raise ValueError(f"center_momentum={config.center_momentum}: must be in [0, 1]")
    if not config.teacher_temp_start > 0:
        raise ValueError(f"teacher_temp_start={config.teacher_temp_start}: must be > 0")
    if config.projector_bottleneck_dim is not None and config.projector_bottleneck_dim < 1:
        raise ValueError(
            f"projector_bottleneck_dim={config.projector_bottleneck_dim}: must be >= 1"
        )
    names = ("teacher_temp_warmup_epochs", "teacher_temp_warmup_steps", "freeze_last_layer_steps")
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 0:
            raise ValueError(f"{name}={value}: must be >= 0")
    if isinstance(METHODS[config.method].pairing, CenteredTarget):
        return
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for name in CENTERING_KEYS:
        if getattr(config, name) != defaults[name]:
            raise ValueError(
                f"{name}={getattr(config, name)}: only a method with a teacher centre uses it "
                f"(dino), not {config.method}"
            )
