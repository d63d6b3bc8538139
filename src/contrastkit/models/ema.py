"""EMA target network (BYOL, ReLIC, MoCo): a frozen copy that trails the online network."""

from __future__ import annotations

import copy
import math

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
    def update(self, momentum: float) -> None:
        """target ← m·target + (1−m)·online for parameters; buffers (BN statistics) are copied."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        for target, online in zip(self.target.parameters(), self.online.parameters(), strict=True):
            target.mul_(momentum).add_(online, alpha=1.0 - momentum)
        for target, online in zip(self.target.buffers(), self.online.buffers(), strict=True):
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
