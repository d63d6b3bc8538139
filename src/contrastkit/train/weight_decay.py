"""A weight-decay schedule: per optimiser step, a cosine from `weight_decay` to
`weight_decay_final`, as DINO's `wd_schedule` (0.04 → 0.4; `cosine_scheduler` in its utils.py):

    wd(step) = final + ½(start − final)(1 + cos(π·step/total))
             = start + ½(final − start)(1 − cos(π·step/total))   (computed so: exact at step 0)

It sets the groups marked `decays` (weights), never the no-decay groups (biases, norms). The value
is a function of the optimiser step alone, so a resumed run sets the same values as an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .config import PretrainConfig


@dataclass(frozen=True)
class WeightDecaySchedule:
    """Cosine from `start` at step 0 towards `final` at step `total` (held there after it)."""

    start: float
    final: float
    total: int

    def __call__(self, step: int) -> float:
        progress = min(step, self.total) / max(1, self.total)
        return self.start + 0.5 * (self.final - self.start) * (1 - math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Set the weight decay of `optimizer`'s decaying groups to this step's value."""
        value = self(step)
        for group in optimizer.param_groups:
            if group.get("decays"):
                group["weight_decay"] = value


def weight_decay_schedule(config: PretrainConfig, total_steps: int) -> WeightDecaySchedule | None:
    """The run's schedule over `total_steps` optimiser steps; None for a constant weight decay."""
    if config.weight_decay_final is None:
        return None
    return WeightDecaySchedule(config.weight_decay, config.weight_decay_final, total_steps)
