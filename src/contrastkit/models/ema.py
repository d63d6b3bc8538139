"""EMA target network (BYOL, ReLIC, MoCo): a frozen copy that trails the online network."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class EMA(nn.Module):
    """Holds `target`, a frozen deep copy of `online` updated by exponential moving average.

    Only the target is a registered submodule, so a parent module's parameters() and
    state_dict() do not list the online network twice.
    """

    online: nn.Module

    def __init__(self, online: nn.Module) -> None:
        super().__init__()
        self.target = copy.deepcopy(online).requires_grad_(False)
        # Bypasses nn.Module registration on purpose: see the class docstring.
        object.__setattr__(self, "online", online)

    @torch.no_grad()
    def update(self, momentum: float, buffers: str = "copy") -> None:
        """target ← m·target + (1−m)·online for parameters; floating buffers (BN statistics) are
        copied (`buffers="copy"`) or averaged with the same m (`"average"`, seed 004); integer
        buffers (BN's batch counter) are always copied."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        _check_buffers(buffers)
        for target, online in zip(self.target.parameters(), self.online.parameters(), strict=True):
            target.mul_(momentum).add_(online, alpha=1.0 - momentum)
        for target, online in zip(self.target.buffers(), self.online.buffers(), strict=True):
            if buffers == "average" and target.is_floating_point():
                target.mul_(momentum).add_(online, alpha=1.0 - momentum)
            else:
                target.copy_(online)

    def forward(self, *args: Tensor) -> Tensor:
        """Run the target network."""
        return self.target(*args)


def cosine_momentum(step: int, total_steps: int, base: float = 0.99, final: float = 1.0) -> float:
    """BYOL's schedule: m = final − (final − base)·(cos(π·step/total)+1)/2, from base to final.

    Steps past `total_steps` keep the final momentum.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    progress = min(step, total_steps) / total_steps
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


EMA_SCHEDULES = ("cosine", "constant")
EMA_BUFFERS = ("copy", "average")


def _check_buffers(buffers: str) -> None:
    if buffers not in EMA_BUFFERS:
        raise ValueError(f"unknown EMA buffer rule {buffers!r}; valid: {', '.join(EMA_BUFFERS)}")


@dataclass(frozen=True)
class EMASchedule:
    """When and how the EMA target moves after an optimiser step.

    Before step `update_after_step` the target copies the online network; after it, it moves
    every `update_every` steps (the steps s with (s + 1) divisible by it, as lucidrains'
    ema-pytorch counts) with momentum `base` (`constant`) or BYOL's cosine from `base` to `final`
    over the run (`cosine`). `buffers` copies or averages BN statistics.
    """

    base: float = 0.99
    final: float = 1.0
    schedule: str = "cosine"
    update_after_step: int = 0
    update_every: int = 1
    buffers: str = "copy"

    def __post_init__(self) -> None:
        for name in ("base", "final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ema_{name}={getattr(self, name)}: must lie in [0, 1]")
        if self.schedule not in EMA_SCHEDULES:
            raise ValueError(
                f"unknown ema_schedule {self.schedule!r}; valid: {', '.join(EMA_SCHEDULES)}"
            )
        if self.update_after_step < 0:
            raise ValueError(f"ema_update_after_step={self.update_after_step}: must be >= 0")
        if self.update_every < 1:
            raise ValueError(f"ema_update_every={self.update_every}: must be >= 1")
        _check_buffers(self.buffers)

    def momentum(self, step: int, total_steps: int) -> float:
        """The momentum of optimiser step `step` of `total_steps`."""
        if self.schedule == "constant":
            return self.base
        return cosine_momentum(step, max(1, total_steps), self.base, self.final)

    @torch.no_grad()
    def apply(self, ema: EMA, step: int, total_steps: int) -> None:
        """Move `ema`'s target after optimiser step `step` as the schedule says."""
        if step < self.update_after_step:
            ema.update(0.0)
        elif (step + 1) % self.update_every == 0:
            ema.update(self.momentum(step, total_steps), self.buffers)
