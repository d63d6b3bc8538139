"""Gradient clipping before the optimiser step, in one of two forms:

- `global`: one norm over all the gradients, each scaled by min(1, max_norm / (norm + 1e-6)),
  as torch's `clip_grad_norm_`;
- `per_parameter`: each parameter's gradient scaled by min(1, max_norm / (its norm + 1e-6)) on
  its own, as `clip_gradients` in DINO's utils.py (facebookresearch/dino).

The factors stay on the device (foreach ops, no `if factor < 1`), so clipping reads nothing back
to the host and adds no synchronisation to a training step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .optim_options import CLIP_MODES

_EPS = 1e-6  # added to the norm by torch and by DINO alike


def clip_gradients(grads: list[Tensor], max_norm: float, mode: str = "global") -> None:
    """Scale `grads` in place so that their norm (`global`) or each one's norm
    (`per_parameter`) is at most `max_norm`."""
    if mode not in CLIP_MODES:
        raise ValueError(f"unknown grad_clip_mode {mode!r}; valid: {', '.join(CLIP_MODES)}")
    if not grads:
        return
    if mode == "global":
        total = torch.nn.utils.get_total_norm(grads, foreach=True)
        factor = torch.clamp(max_norm / (total + _EPS), max=1.0)
        torch._foreach_mul_(grads, factor)
        return
    norms = torch._foreach_norm(grads)
    torch._foreach_add_(norms, _EPS)
    factors = torch._foreach_reciprocal(norms)
    torch._foreach_mul_(factors, max_norm)
    torch._foreach_clamp_max_(factors, 1.0)
    torch._foreach_mul_(grads, factors)
