"""Optimisers and the learning-rate schedules shared by every method.

By default biases and normalisation parameters get no weight decay (and no LARS adaptation),
as in SimCLR, BYOL and later solo-learn; `exclude_bias_norm=False` treats them like weights (the
seeds' code). A parameter group may also ask for a fixed learning rate (SimSiam's predictor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..names import OPTIMIZER_NAMES
from .options import parse_milestones

if TYPE_CHECKING:
    from .config import PretrainConfig

OPTIMIZERS = OPTIMIZER_NAMES


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    Groups with `lars_exclude=True` (biases, norms) take plain SGD steps. torch has no LARS;
    two forms are written out here, with u = g + wd·w:

    - `clip=False`, the SimCLR and BYOL reference code: u scaled by the trust ratio
      η‖w‖/‖u‖ (1 where ‖w‖ or ‖u‖ is 0).
    - `clip=True`, NVIDIA apex's LARC as pl_bolts' LARSWrapper runs it (solo-learn, seed 002):
      the local lr η‖w‖/(‖g‖ + wd‖w‖ + ε), clipped at the base lr, i.e. u scaled by
      min(η‖w‖/((‖g‖ + wd‖w‖ + ε)·lr), 1); where ‖w‖ or ‖g‖ is 0 the step takes g alone.

    Momentum then runs on the scaled u.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        clip: bool = False,
        eps: float = 1e-8,
    ):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta}
        defaults["lars_exclude"] = False
        super().__init__(params, defaults)
        self.clip, self.eps = clip, eps

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
                    grad = self._scaled(p, p.grad, grad, group)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = grad.clone()
                else:
                    buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])
        return loss

    def _scaled(self, p: Tensor, grad: Tensor, update: Tensor, group: dict) -> Tensor:
        """The update u = g + wd·w scaled by the trust ratio, or by LARC's clipped local lr."""
        param_norm = torch.linalg.norm(p)
        if not self.clip:
            update_norm = torch.linalg.norm(update)
            usable = (param_norm > 0) & (update_norm > 0)
            return update * torch.where(usable, group["eta"] * param_norm / update_norm, 1.0)
        grad_norm = torch.linalg.norm(grad)
        local_lr = (
            group["eta"] * param_norm / (grad_norm + param_norm * group["weight_decay"] + self.eps)
        )
        usable = (param_norm > 0) & (grad_norm > 0)
        return torch.where(usable, update * (local_lr / group["lr"]).clamp(max=1.0), grad)


def is_no_decay(name: str, param: Tensor) -> bool:
    """Biases and normalisation weights (1-D tensors) take no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias")


def split_decay_groups(
    named_params: Iterable[tuple[str, Tensor]],
    weight_decay: float,
    exclude_bias_norm: bool = True,
    **group_options: object,
) -> list[dict]:
    """Two parameter groups: weights with `weight_decay` (marked `decays`, for a weight-decay
    schedule), and biases/norms without it (and without LARS scaling); `exclude_bias_norm=False`
    keeps every parameter in the first."""
    decay, no_decay = [], []
    for name, param in named_params:
        if param.requires_grad:
            excluded = exclude_bias_norm and is_no_decay(name, param)
            (no_decay if excluded else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "decays": True, **group_options},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, **group_options},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    name: str,
    groups: list[dict],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    lars_eta: float = 0.02,
    lars_clip: bool = False,
    adam_eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """The optimiser called `name` over prepared parameter groups."""
    if name == "sgd":
        for g in groups:
            g.pop("lars_exclude", None)
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(
            groups,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=lars_eta,
            clip=lars_clip,
        )
    if name in ("adam", "adamw"):
        for g in groups:
            g.pop("lars_exclude", None)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(groups, lr=lr, weight_decay=weight_decay, eps=adam_eps)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


@dataclass(frozen=True)
class LRSchedule:
    """The lr as a multiple of the peak, per unit (a step or an epoch): warm-up, then a decay.

    Warm-up (units 0..warmup−1) is linear from `warmup_start` (default 1/warmup) and reaches the
    peak at its last unit (`ends_at_peak`, pl_bolts' LinearWarmupCosineAnnealingLR) or at the
    unit after it (Hugging Face's schedules, SupContrast). After it, `kind`:

    - cosine: final + (1 − final)·½(1 + cos(2π·cycles·p)), p the decay's progress in [0, 1];
      cycles 0.5 ends at `final_ratio`, 0.3 is HF's `get_cosine_schedule_with_warmup(
      num_cycles=0.3)`, ending at 34.5% of the peak;
    - constant: the peak;
    - step: the peak times gamma per milestone reached (torch's MultiStepLR).
    """

    total: int
    warmup: int = 0
    warmup_start: float | None = None
    ends_at_peak: bool = True
    kind: str = "cosine"
    final_ratio: float = 0.0
    cycles: float = 0.5
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __call__(self, unit: int) -> float:
        if unit < self.warmup:
            start = 1 / self.warmup if self.warmup_start is None else self.warmup_start
            span = self.warmup - 1 if self.ends_at_peak else self.warmup
            return start + (1 - start) * unit / span if span else start
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** sum(unit >= m for m in self.milestones)
        progress = min(1.0, (unit - self.warmup) / max(1, self.total - self.warmup))
        cosine = 0.5 * (1 + math.cos(2 * math.pi * self.cycles * progress))
        return self.final_ratio + (1 - self.final_ratio) * cosine


def lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: LRSchedule, steps_per_unit: int = 1
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per optimiser step that follows `schedule` in units of
    `steps_per_unit` steps (1: per step; the steps of an epoch: per epoch). Groups marked
    `fixed_lr` (SimSiam's predictor) keep their base lr."""

    def factor(step: int) -> float:
        return schedule(step // steps_per_unit)

    lambdas = [(lambda _: 1.0) if g.get("fixed_lr") else factor for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def schedule_from_config(config: PretrainConfig, total_steps: int) -> tuple[LRSchedule, int]:
    """The run's LRSchedule and the optimiser steps per schedule unit."""
    per_epoch = config.schedule_interval == "epoch"
    steps_per_unit = max(1, total_steps // config.epochs) if per_epoch else 1
    total = config.epochs if per_epoch else total_steps
    if config.warmup_steps is not None:
        warmup = config.warmup_steps
    else:
        warmup = round(config.warmup_epochs * total / config.epochs)

    def ratio(value: float | None) -> float | None:  # of the peak; lr 0 stays 0 throughout
        return None if value is None else value / config.lr if config.lr else 0.0

    final = ratio(config.lr_final)
    schedule = LRSchedule(
        total=total,
        warmup=warmup,
        warmup_start=ratio(config.warmup_start_lr),
        ends_at_peak=config.warmup_ends_at_peak,
        kind=config.schedule,
        final_ratio=config.lr_final_ratio if final is None else final,
        cycles=config.cosine_cycles,
        milestones=parse_milestones(config.lr_milestones) if config.lr_milestones else (),
        gamma=config.lr_gamma,
    )
    return schedule, steps_per_unit


def optimization_from_config(
    config: PretrainConfig, role_groups: list[dict], total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser and per-step scheduler `config` asks for, over a method's `param_groups`
    (dicts of `named` parameters and an optional `fixed_lr`)."""
    groups = []
    for group in role_groups:
        groups += split_decay_groups(
            group["named"],
            config.weight_decay,
            config.exclude_bias_norm,
            fixed_lr=group.get("fixed_lr", False),
        )
    optimizer = build_optimizer(
        config.optimizer,
        groups,
        config.lr,
        config.weight_decay,
        config.momentum,
        lars_eta=config.lars_eta,
        lars_clip=config.lars_clip,
        adam_eps=config.adam_eps,
    )
    schedule, steps_per_unit = schedule_from_config(config, total_steps)
    return optimizer, lr_scheduler(optimizer, schedule, steps_per_unit)


def trainable_named_parameters(module: nn.Module) -> list[tuple[str, Tensor]]:
    """Named parameters that require a gradient."""
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]
