"""Optimisers and the learning-rate schedule shared by every method.

Biases and normalisation parameters get no weight decay (and no LARS adaptation), as in
SimCLR, BYOL and solo-learn; a parameter group may also ask for a fixed learning rate
(SimSiam's predictor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

OPTIMIZERS = ("sgd", "lars", "adam", "adamw")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    Groups with `lars_exclude=True` (biases, norms) take plain SGD steps. torch has no LARS;
    this is the formulation of the SimCLR and BYOL reference code (trust ratio η‖w‖/‖g + wd·w‖).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
    ):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta}
        defaults["lars_exclude"] = False
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.add(p, alpha=group["weight_decay"])
                if not group["lars_exclude"]:
                    param_norm, grad_norm = torch.linalg.norm(p), torch.linalg.norm(grad)
                    trust = torch.where(
                        (param_norm > 0) & (grad_norm > 0),
                        group["eta"] * param_norm / grad_norm,
                        torch.ones_like(param_norm),
                    )
                    grad = grad.mul(trust)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = grad.clone()
                else:
                    buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])
        return loss


def is_no_decay(name: str, param: Tensor) -> bool:
    """Biases and normalisation weights (1-D tensors) take no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias")


def split_decay_groups(
    named_params: Iterable[tuple[str, Tensor]], weight_decay: float, **group_options: object
) -> list[dict]:
    """Two parameter groups: weights with `weight_decay`, and biases/norms without it."""
    decay, no_decay = [], []
    for name, param in named_params:
        if param.requires_grad:
            (no_decay if is_no_decay(name, param) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, **group_options},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, **group_options},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    name: str, groups: list[dict], lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """The optimiser called `name` over prepared parameter groups."""
    if name == "sgd":
        for g in groups:
            g.pop("lars_exclude", None)
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name in ("adam", "adamw"):
        for g in groups:
            g.pop("lars_exclude", None)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, final_ratio: float = 0.0
) -> float:
    """Learning-rate multiplier: linear warm-up (step s of it gets (s+1)/warmup_steps), then a
    half cosine from 1 to `final_ratio` over the remaining steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warm-up + cosine on every group except those marked `fixed_lr`."""
    lambdas = [
        (lambda _: 1.0)
        if g.get("fixed_lr")
        else (lambda s: warmup_cosine(s, total_steps, warmup_steps))
        for g in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def trainable_named_parameters(module: nn.Module) -> list[tuple[str, Tensor]]:
    """Named parameters that require a gradient."""
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]
