"""One nn.Module that runs any MethodSpec: backbone, heads, loss, and the views' meeting plan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import LOSS_MODULES
from ..losses.sigmoid import cosine_gamma
from ..models.backbones import Backbone
from ..models.ema import EMA, cosine_momentum
from ..models.heads import head_preset
from .pairing import online_target_pairs, view_pairs
from .spec import METHODS, MethodSpec


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
    """Backbone + projector (+ predictor, EMA target or classifier) + loss, per `spec`.

    The trainer calls `set_step` before each step (schedules), `forward(views, labels)` for the
    loss, and `after_optimizer_step` after the update (EMA). `forward` is `loss_from(embed(...))`:
    gradient caching calls the two halves itself.
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
        ema_base: float = 0.99,
        gamma_decay_steps: int = 0,
    ):
        super().__init__()
        self.spec = spec
        self.loss_name = loss or spec.default_loss
        if self.loss_name not in spec.losses:
            raise ValueError(
                f"method {spec.name!r} cannot train with loss {self.loss_name!r}; "
                f"valid: {', '.join(spec.losses)}"
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
        if spec.pairing == "classify":
            if not num_classes:
                raise ValueError("the supervised baseline needs num_classes >= 1")
            self.classifier = nn.Linear(backbone.feature_dim, num_classes)
        self.target = (
            EMA(nn.Sequential(backbone, self.projector))
            if spec.pairing == "online_target"
            else None
        )
        self.ema_base, self.gamma_decay_steps = ema_base, gamma_decay_steps
        self.initial_gamma = float(getattr(self.criterion, "gamma", 0.0))
        self._momentum = ema_base

    def set_step(self, step: int, total_steps: int) -> None:
        """Apply the step's schedules: the EMA momentum and the sigmoid loss's γ."""
        if self.target is not None:
            self._momentum = cosine_momentum(step, max(1, total_steps), base=self.ema_base)
        if hasattr(self.criterion, "set_step"):  # schedules the loss owns
            self.criterion.set_step(step)
        if self.gamma_decay_steps > 0 and hasattr(self.criterion, "gamma"):
            self.criterion.gamma = cosine_gamma(step, self.initial_gamma, self.gamma_decay_steps)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Move the EMA target towards the online network."""
        if self.target is not None:
            self.target.update(self._momentum)

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
        """The loss over a whole batch's embeddings, and the loss's own components."""
        if self.spec.needs_labels and labels is None:
            raise ValueError(f"method {self.spec.name!r} needs labels")
        if embeddings.logits is not None:
            return F.cross_entropy(embeddings.logits, labels), {}
        z = embeddings.z
        if self.spec.pairing == "stacked":
            loss = self.criterion(torch.stack(z, dim=1), labels)
            return loss, dict(getattr(self.criterion, "components", {}))
        if self.spec.pairing == "online_target":
            targets = embeddings.targets
            if targets is None:
                raise ValueError(f"method {self.spec.name!r} needs the EMA target's embeddings")
            pairs = online_target_pairs(len(z), self.n_global)
            return self._mean(lambda i, j: self.criterion(z[i], targets[j]), pairs)
        pairs = view_pairs(len(z), self.n_global)
        if self.spec.pairing == "predictor":
            p = embeddings.p
            return self._mean(lambda i, j: self.criterion(p[i], p[j], z[i], z[j]), pairs)
        return self._mean(lambda i, j: self.criterion(z[i], z[j]), pairs)

    def online_modules(self) -> list[nn.Module]:
        """The modules `embed` runs with a graph: all but the EMA target."""
        heads = (self.projector, self.predictor, self.classifier)
        return [self.backbone, *(m for m in heads if m is not None)]

    def _mean(
        self, pair_loss: Callable[[int, int], Tensor], pairs: list[tuple[int, int]]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean loss over view pairs, and the mean of the loss's own components."""
        if not pairs:
            raise ValueError(f"method {self.spec.name!r} needs at least 2 views")
        losses, parts = [], []
        for i, j in pairs:
            losses.append(pair_loss(i, j))
            parts.append(dict(getattr(self.criterion, "components", {})))
        components = {k: torch.stack([part[k] for part in parts]).mean() for k in parts[0]}
        return torch.stack(losses).mean(), components

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


def _out_dim(head: nn.Module) -> int:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
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
