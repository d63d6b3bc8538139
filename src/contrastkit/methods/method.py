"""One nn.Module that runs any MethodSpec: backbone, heads, loss, and the views' meeting plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import LOSS_MODULES
from ..models.backbones import Backbone
from ..models.ema import EMA, EMASchedule
from ..models.heads import NormalizedLinear, head_preset
from .pairing import Batch, Pairing
from .queue import Queue
from .spec import METHODS, PAIR_REDUCTIONS, MethodSpec


@dataclass
class StepOutput:
    """What one training step of a method produces for the trainer."""

    loss: Tensor
    features: Tensor
    components: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Embeddings:
    """One pass of a batch through a method's networks: what its loss reads, per sample.

    `z` holds each view's projection, `p` each view's prediction (predictor pairing), `logits`
    the classifier's (supervised baseline), `targets` the EMA target's projections of the global
    views (no graph); `features` are view 0's backbone features, for the online probe.
    """

    features: Tensor
    z: list[Tensor]
    p: list[Tensor] | None = None
    logits: Tensor | None = None
    targets: list[Tensor] | None = None

    def loss_inputs(self) -> list[Tensor]:
        """The tensors the loss differentiates through, in a fixed order."""
        return [*self.z, *(self.p or []), *([] if self.logits is None else [self.logits])]

    def with_loss_inputs(self, tensors: Sequence[Tensor]) -> Embeddings:
        """A copy whose loss inputs are `tensors`, given in the order of `loss_inputs`."""
        tensors = list(tensors)
        n_z, n_p = len(self.z), len(self.p or [])
        return replace(
            self,
            z=tensors[:n_z],
            p=None if self.p is None else tensors[n_z : n_z + n_p],
            logits=None if self.logits is None else tensors[n_z + n_p],
        )

    @staticmethod
    def cat(parts: Sequence[Embeddings]) -> Embeddings:
        """Micro-batches' embeddings joined along the batch dimension."""

        def join(values: list[Any]) -> Any:
            if values[0] is None:
                return None
            if isinstance(values[0], Tensor):
                return torch.cat(values)
            return [torch.cat(group) for group in zip(*values, strict=True)]

        return Embeddings(
            **{f.name: join([getattr(e, f.name) for e in parts]) for f in fields(Embeddings)}
        )


class Method(nn.Module):
    """Backbone + projector (+ predictor, EMA target, queue, prototypes or classifier) + loss,
    per `spec`.

    What the method needs and how its views meet come from `spec.pairing`; the trainer calls
    `set_step` before each step (schedules of the EMA and of the loss), `forward(views, labels)`
    for the loss, `before_optimizer_step` between backward and the update (frozen layers drop
    their gradients), `after_optimizer_step` after it (EMA, queue, the pairing's state) and
    `end_epoch` after each epoch (the state's collapse check). `forward` is
    `loss_from(embed(...))`: gradient caching calls the two halves itself. `pairing` replaces
    the spec's (the same kind, with a run's options: `Pairing.from_config`).
    """

    views_in_one_batch: bool = False
    """Whether `embed` passes the views of one size through the backbone and heads as one batch,
    so batch norm's statistics span all of them (solo-learn, SupContrast), not one view each."""

    def __init__(
        self,
        spec: MethodSpec,
        backbone: Backbone,
        loss: str | None = None,
        loss_options: dict[str, Any] | None = None,
        n_global: int = 2,
        num_classes: int | None = None,
        projector_options: dict[str, Any] | None = None,
        predictor_options: dict[str, Any] | None = None,
        ema: EMASchedule | None = None,
        queue_size: int | None = None,
        pair_reduction: str | None = None,
        pairing: Pairing | None = None,
    ):
        super().__init__()
        self.spec, self.pairing = spec, pairing or spec.pairing
        self.loss_name = loss or spec.default_loss
        if self.loss_name not in spec.losses:
            raise ValueError(
                f"method {spec.name!r} cannot train with loss {self.loss_name!r}; "
                f"valid: {', '.join(spec.losses)}"
            )
        self.pair_reduction = pair_reduction or spec.pair_reduction
        if self.pair_reduction not in PAIR_REDUCTIONS:
            raise ValueError(
                f"unknown pair_reduction {self.pair_reduction!r}; "
                f"valid: {', '.join(PAIR_REDUCTIONS)}"
            )
        self.n_global = n_global
        self.backbone = backbone
        self.projector = (
            head_preset(spec.projector, backbone.feature_dim, **(projector_options or {}))
            if spec.projector
            else nn.Identity()
        )
        self.predictor = None
        if spec.predictor:
            # The predictor maps projections back onto the projection space.
            dim = _out_dim(self.projector)
            options = {**(predictor_options or {}), "out_dim": dim}
            self.predictor = head_preset(spec.predictor, dim, **options)
        self.criterion = _build_criterion(self.loss_name, loss_options or {})
        self.classifier = None
        if self.pairing.classifier:
            if not num_classes:
                raise ValueError("the supervised baseline needs num_classes >= 1")
            self.classifier = nn.Linear(backbone.feature_dim, num_classes)
        self.target = EMA(nn.Sequential(backbone, self.projector)) if self.pairing.target else None
        self.ema = ema or EMASchedule()
        self.prototypes = (
            self.pairing.prototype_layer(_out_dim(self.projector)) if spec.projector else None
        )
        self.queue = None
        if self.pairing.queue_size:
            size = queue_size or self.pairing.queue_size
            count = self.pairing.queue_count(n_global)
            self.queue = Queue(size, _out_dim(self.projector), count)
        self.state = self.pairing.build_state(_out_dim(self.projector)) if spec.projector else None
        self._step, self._total_steps, self._epoch = 0, 1, 0
        self._pending: tuple[Tensor, Tensor | None] | None = None

    @property
    def reads_labels(self) -> bool:
        """Whether `forward` should be given the labels: for the loss, or for a logged figure."""
        return self.spec.needs_labels or self.pairing.reads_labels

    def set_step(self, step: int, total_steps: int, epoch: int = 0) -> None:
        """Apply the step's schedules: the EMA momentum's, the loss's own (sigmoid γ) and the
        pairing state's (DINO's teacher temperature); `epoch` is the step's (SwAV's queue
        starts at a set epoch)."""
        self._step, self._total_steps, self._epoch = step, max(1, total_steps), epoch
        for owner in (self.criterion, self.state):
            schedule = getattr(owner, "set_step", None)
            if schedule is not None:
                schedule(step, total_steps)

    def before_optimizer_step(self) -> None:
        """Drop the gradients of layers frozen at this optimiser step (DINO's last layer, SwAV's
        prototypes), so that the optimiser leaves them exactly as they are."""
        for module in self.modules():
            if isinstance(module, NormalizedLinear):
                module.drop_grads_if_frozen(self._step)

    def end_epoch(self, epoch: int) -> None:
        """The pairing state's end-of-epoch check (DINO's collapse watch), if it has one."""
        check = getattr(self.state, "end_epoch", None)
        if check is not None:
            check(epoch)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Move the EMA target towards the online network; push this step's keys to the queue;
        update the pairing's state (DINO's centre)."""
        if self.target is not None:
            self.ema.apply(self.target, self._step, self._total_steps)
        if self.queue is not None and self._pending is not None:
            self.queue.push(*self._pending)
        self._pending = None
        update = getattr(self.state, "after_optimizer_step", None)
        if update is not None:
            update()

    def forward(self, views: Sequence[Tensor], labels: Tensor | None = None) -> StepOutput:
        """The loss over the views: `loss_from(embed(views))`."""
        embeddings = self.embed(views)
        loss, components = self.loss_from(embeddings, labels)
        return StepOutput(loss, embeddings.features, components)

    def embed(self, views: Sequence[Tensor], with_targets: bool = True) -> Embeddings:
        """Every view through the online network (and the EMA target, without a graph).

        Each sample's outputs depend on the other samples only through batch norm, so a batch
        may be embedded in micro-batches (gradient caching). `with_targets=False` skips the
        target, for a re-forward whose targets are already known.
        """
        groups = (
            _size_groups(views) if self.views_in_one_batch else [[i] for i in range(len(views))]
        )
        features = _in_groups(self.backbone, views, groups)
        if self.classifier is not None:
            return Embeddings(features[0], [], logits=self.classifier(features[0]))
        z = _in_groups(self.projector, features, groups)
        p = _in_groups(self.predictor, z, groups) if self.predictor is not None else None
        targets = None
        if self.target is not None and with_targets:
            with torch.no_grad():
                targets = [self.target(v) for v in views[: self.n_global]]
        return Embeddings(features[0], z, p, targets=targets)

    def loss_from(
        self, embeddings: Embeddings, labels: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss over a whole batch's embeddings and the figures for the log: the loss's
        terms (mean over pairs), the pairing's own, and `z_std` (collapse monitor).

        Called once per optimiser step, so the keys it leaves for the queue are pushed once
        per step, by `after_optimizer_step`.
        """
        if self.spec.needs_labels and labels is None:
            raise ValueError(f"method {self.spec.name!r} needs labels")
        n_views = len(embeddings.z) if embeddings.logits is None else 1
        if n_views < self.pairing.min_views:
            raise ValueError(f"method {self.spec.name!r} needs at least 2 views")
        batch = Batch(
            embeddings,
            labels,
            self.n_global,
            self.criterion,
            self.queue,
            state=self.state,
            prototypes=self.prototypes,
            epoch=self._epoch,
        )
        losses, parts = self.pairing.losses(batch)
        if not losses:
            raise ValueError(f"method {self.spec.name!r} needs at least 2 views")
        stacked = torch.stack(losses)
        loss = stacked.sum() if self.pair_reduction == "sum" else stacked.mean()
        components = {k: torch.stack([part[k] for part in parts]).mean() for k in parts[0]}
        components.update(self.pairing.extra_terms(batch))
        if embeddings.z:
            components["z_std"] = z_std(embeddings.z[0])
        observe = getattr(self.state, "observe", None)
        if observe is not None:
            components.update(observe(embeddings.targets[: self.n_global]))
        entries = self.pairing.queue_entries(batch) if self.queue is not None else None
        self._pending = None if entries is None else (entries, labels)
        return loss, components

    def online_modules(self) -> list[nn.Module]:
        """The modules `embed` runs with a graph: all but the EMA target."""
        heads = (self.projector, self.predictor, self.classifier, self.prototypes)
        return [self.backbone, *(m for m in heads if m is not None)]

    def param_groups(self, fixed_predictor_lr: bool = False) -> list[dict[str, Any]]:
        """Named parameter lists by role; the predictor may keep a fixed learning rate (SimSiam)."""
        groups = [
            {
                "named": [
                    (n, p)
                    for n, p in self.named_parameters()
                    if not n.startswith(("predictor.", "target."))
                ]
            }
        ]
        if self.predictor is not None:
            groups.append(
                {
                    "named": list(self.predictor.named_parameters(prefix="predictor")),
                    "fixed_lr": fixed_predictor_lr,
                }
            )
        return groups


def _size_groups(views: Sequence[Tensor]) -> list[list[int]]:
    """Indices of the views, grouped by shape (global crops, local crops)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, view in enumerate(views):
        groups.setdefault(tuple(view.shape), []).append(index)
    return list(groups.values())


def _in_groups(network: nn.Module, inputs: Sequence[Tensor], groups: list[list[int]]) -> list:
    """`network` on each input, one call per group of inputs joined along the batch."""
    outputs: list[Tensor] = list(inputs)
    for indices in groups:
        if len(indices) == 1:
            outputs[indices[0]] = network(inputs[indices[0]])
            continue
        joined = network(torch.cat([inputs[i] for i in indices]))
        for i, part in zip(indices, joined.chunk(len(indices)), strict=True):
            outputs[i] = part
    return outputs


def z_std(z: Tensor) -> Tensor:
    """Mean over dimensions of the batch std of the L2-normalised projections (solo-learn's
    `z_std`): 1/√D for spread-out embeddings, 0 when they collapse to one point."""
    with torch.no_grad():
        return F.normalize(z.float(), dim=1).std(dim=0).mean()


def _out_dim(head: nn.Module) -> int:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear | NormalizedLinear)]
    return linears[-1].out_features


def _build_criterion(loss: str, options: dict[str, Any]) -> nn.Module:
    if loss == "cross_entropy":
        return nn.CrossEntropyLoss()
    return LOSS_MODULES[loss](**options)


def build_method(name: str, backbone: Backbone, **options: Any) -> Method:
    """The method called `name` (one of METHODS) on `backbone`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return Method(METHODS[name], backbone, **options)
