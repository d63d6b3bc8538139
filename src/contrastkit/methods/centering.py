"""DINO's teacher state: the centre its outputs are shifted by, the teacher temperature's
warm-up, and the collapse watch over the teacher's distributions.

The centre is a buffer (saved with the method's weights), the temperature a function of the
optimiser step, so a resumed run continues both exactly. Each step's figures stay on the device;
the collapse check reads two numbers back once an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import EXIT_FAILURE, ContrastkitError
from ..losses.dino import dino_center, teacher_temperature

COLLAPSE_TOLERANCE = 0.01
"""A teacher entropy within this fraction of log K from 0 or from log K counts as collapsed."""


class CollapseError(ContrastkitError, RuntimeError):
    """The teacher's outputs collapsed (one-hot or uniform) for a whole epoch; one line."""

    exit_code = EXIT_FAILURE


class TeacherCentering(nn.Module):
    """The centre (1, K) of the teacher's outputs, its temperature schedule and collapse watch.

    `set_step` sets `temperature`: linear from `temp_start` to `temp_end` over the warm-up
    (`warmup_steps`, or `warmup_epochs` of the run's `epochs`, one value per epoch as in DINO),
    then `temp_end`. `observe` takes a step's teacher outputs (the global views) and returns its
    monitors; `after_optimizer_step` moves the centre towards their mean over the global batch
    (`gather`: over every rank); `end_epoch` raises CollapseError when the teacher entropy
    stayed near 0 or near log K all epoch.
    """

    def __init__(
        self,
        dim: int,
        momentum: float = 0.9,
        temp_start: float = 0.04,
        temp_end: float = 0.04,
        warmup_steps: int | None = None,
        warmup_epochs: int = 0,
        epochs: int = 1,
        gather: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"center_momentum={momentum}: must be in [0, 1]")
        self.register_buffer("center", torch.zeros(1, dim))
        # The epoch's lowest and highest step entropy, on the device: monitors, not state to
        # resume, and no buffers, which DDP would overwrite with rank 0's.
        self._lowest: Tensor | None = None
        self._highest: Tensor | None = None
        self.momentum, self.gather = momentum, gather
        self.temp_start, self.temp_end = temp_start, temp_end
        self.warmup_steps, self.warmup_epochs, self.epochs = warmup_steps, warmup_epochs, epochs
        self.temperature = teacher_temperature(
            0, warmup_steps or warmup_epochs, temp_start, temp_end
        )
        self._pending: list[Tensor] | None = None

    def set_step(self, step: int, total_steps: int) -> None:
        """The teacher temperature of optimiser step `step` (from 0) of `total_steps`: by step
        over `warmup_steps`, else by epoch over `warmup_epochs` as DINO's schedule (one value
        per epoch, np.linspace(start, end, warmup_epochs)[epoch])."""
        if self.warmup_steps is not None:
            at, warmup = step, self.warmup_steps
        else:
            at, warmup = step // max(1, total_steps // self.epochs), self.warmup_epochs
        self.temperature = teacher_temperature(at, warmup, self.temp_start, self.temp_end)

    @torch.no_grad()
    def observe(self, teacher_out: Sequence[Tensor]) -> dict[str, Tensor]:
        """Keep the step's teacher outputs for the centre's update; return the monitors of its
        centred, sharpened distributions p: `teacher_entropy` (mean over rows of H(p)),
        `teacher_kl_uniform` (KL(mean p ‖ uniform) = log K − H(mean p)) and `center_norm`."""
        self._pending = [t.detach() for t in teacher_out]
        logits = torch.cat(self._pending).float() - self.center.float()
        log_p = torch.log_softmax(logits / self.temperature, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1).mean()
        mean = log_p.exp().mean(0)
        kl = (mean * (mean.clamp_min(1e-30).log() + math.log(mean.shape[0]))).sum()
        first = self._lowest is None
        self._lowest = entropy if first else torch.minimum(self._lowest, entropy)
        self._highest = entropy if first else torch.maximum(self._highest, entropy)
        return {
            "teacher_entropy": entropy,
            "teacher_kl_uniform": kl,
            "center_norm": self.center.float().norm(),
        }

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """centre ← m·centre + (1 − m)·(mean teacher output over the global batch)."""
        if self._pending is not None:
            self.center.copy_(dino_center(self.center, self._pending, self.momentum, self.gather))
        self._pending = None

    def end_epoch(self, epoch: int) -> None:
        """Raise CollapseError if every step of the epoch had a teacher entropy within
        COLLAPSE_TOLERANCE·log K of 0 or of log K (on every rank: all ranks decide alike)."""
        if self._lowest is None:
            return
        bounds = torch.stack([-self._lowest, self._highest])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(bounds, op=dist.ReduceOp.MAX)
        lowest, highest = (-bounds[0]).item(), bounds[1].item()
        self._lowest = self._highest = None
        log_k = math.log(self.center.shape[-1])
        tolerance = COLLAPSE_TOLERANCE * log_k
        if highest <= tolerance:
            state = f"near 0 (at most {highest:.3g})"
        elif lowest >= log_k - tolerance:
            state = f"near log K = {log_k:.3g} (at least {lowest:.3g})"
        else:
            return
        raise CollapseError(
            f"DINO collapsed in epoch {epoch}: the teacher entropy stayed {state} at every "
            f"step; try a lower lr, a longer freeze_last_layer_steps or another "
            f"center_momentum (now {self.momentum})"
        )
