"""Checks of the method options of a pretraining configuration (EMA, queue, pair reduction)."""

from __future__ import annotations

from typing import Any

from ..models.ema import EMASchedule
from .spec import PAIR_REDUCTIONS


def check_method_options(config: Any) -> None:
    """Raise ValueError naming the first invalid method option and what would be valid."""
    EMASchedule(
        config.ema_base,
        config.ema_final,
        config.ema_schedule,
        config.ema_update_after_step,
        config.ema_update_every,
        config.ema_buffers,
    )
    if config.queue_size is not None and config.queue_size < 1:
        raise ValueError(f"queue_size={config.queue_size}: must be >= 1")
    if config.pair_reduction is not None and config.pair_reduction not in PAIR_REDUCTIONS:
        raise ValueError(
            f"unknown pair_reduction {config.pair_reduction!r}; valid: {', '.join(PAIR_REDUCTIONS)}"
        )
