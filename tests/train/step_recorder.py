"""A callback that records, for each optimiser step of a run, the method's parameters before and
after the step and the gradients the optimiser was handed, so tests can check an update against
a reference computed from those gradients."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L
from torch import Tensor


@dataclass
class RecordedStep:
    """One optimiser step: parameters before and after, the gradients before the module's own
    `on_before_optimizer_step` (clipping) ran, and each group's weight decay after the step."""

    before: dict[str, Tensor]
    grads: dict[str, Tensor] = field(default_factory=dict)
    after: dict[str, Tensor] = field(default_factory=dict)
    weight_decays: list[float] = field(default_factory=list)


class StepRecorder(L.Callback):
    """Records every optimiser step of the method's parameters (see RecordedStep).

    Lightning calls callbacks' `on_before_optimizer_step` before the module's, so the gradients
    recorded are those of the backward pass, not yet clipped.
    """

    def __init__(self) -> None:
        self.steps: list[RecordedStep] = []
        self.group: dict[str, int] = {}  # each parameter's optimiser group

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        params = module.method.named_parameters()
        self.steps.append(RecordedStep({n: p.detach().clone() for n, p in params}))

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        self.steps[-1].grads = {
            n: p.grad.detach().clone()
            for n, p in module.method.named_parameters()
            if p.grad is not None
        }

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        step = self.steps[-1]
        step.after = {n: p.detach().clone() for n, p in module.method.named_parameters()}
        groups = trainer.optimizers[0].param_groups
        step.weight_decays = [g["weight_decay"] for g in groups]
        names = {id(p): n for n, p in module.method.named_parameters()}
        self.group = {names[id(p)]: i for i, g in enumerate(groups) for p in g["params"]}
