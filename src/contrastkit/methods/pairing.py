"""Which views meet which: one small class per way a method combines its per-view outputs.

A pairing says what the method needs besides backbone and projector (an EMA target, a predictor,
a queue) and computes the loss terms of a batch from its embeddings. `Method` builds what the
pairing asks for and delegates the loss to it; adding a kind of method is adding a class here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..losses.dino import DINOLoss
from ..losses.nnclr import nearest_neighbour_index
from .centering import TeacherCentering

if TYPE_CHECKING:
    from .method import Embeddings
    from .queue import Queue

Terms = dict[str, Tensor]


def view_pairs(n_views: int, n_global: int) -> list[tuple[int, int]]:
    """Unordered pairs (i, j), i < j, with i a global view: two views give just (0, 1).

    With multi-crop every global view meets every other view; local views never meet each
    other, as in SwAV and DINO.
    """
    return [(i, j) for i in range(min(n_global, n_views)) for j in range(i + 1, n_views)]


def online_target_pairs(n_views: int, n_global: int) -> list[tuple[int, int]]:
    """Pairs (i, j): every online view i against every global target view j ≠ i.

    The target network sees global views only (ReLIC, BYOL, DINO).
    """
    return [(i, j) for i in range(n_views) for j in range(min(n_global, n_views)) if i != j]


def call_loss(criterion: Callable[..., Any], *inputs: Any) -> tuple[Tensor, Terms]:
    """The criterion's loss and the terms it returns for the log (none for most losses)."""
    with_terms = getattr(criterion, "forward_with_terms", None)
    if with_terms is not None:
        return with_terms(*inputs)
    return criterion(*inputs), {}


@dataclass(frozen=True)
class Batch:
    """What a pairing reads: the embeddings, the labels (or None), the number of global views,
    the loss module, the method's queue (or None), its prototypes (or None) and the epoch."""

    embeddings: Embeddings
    labels: Tensor | None
    n_global: int
    criterion: nn.Module
    queue: Queue | None
    state: nn.Module | None = None  # the pairing's own running state (`Pairing.build_state`)
    prototypes: nn.Module | None = None
    epoch: int = 0


@dataclass(frozen=True)
class Pairing:
    """The default: the loss on each pair of projections (SimCLR, Barlow Twins, VICReg)."""

    target: bool = False  # an EMA copy of backbone + projector embeds the global views
    predictor: bool = False  # a predictor head on top of the projector
    queue_size: int = 0  # default rows of the method's queue; 0: no queue
    classifier: bool = False  # a linear classifier on the backbone replaces the heads
    min_views: int = 2
    reads_labels: bool = False  # labels are read (for a logged figure) even if not needed

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        """One loss per view pair, and the terms each returned."""
        z = batch.embeddings.z
        return _each(batch, [(z[i], z[j]) for i, j in view_pairs(len(z), batch.n_global)])

    def from_config(self, config: Any) -> Pairing:
        """This pairing with the options a run's configuration sets (none by default)."""
        return self

    def prototype_layer(self, dim: int) -> nn.Module | None:
        """The layer scoring `dim`-wide projections against prototypes (SwAV); None: none."""
        return None

    def queue_count(self, n_global: int) -> int:
        """How many ring buffers the queue holds."""
        return 1

    def queue_entries(self, batch: Batch) -> Tensor | None:
        """This step's keys for the queue, (count, B, D) without a graph; None: nothing."""
        return None

    def extra_terms(self, batch: Batch) -> Terms:
        """Figures for the log that are not loss terms."""
        return {}

    def build_state(self, out_dim: int) -> nn.Module | None:
        """The method's running state this pairing reads (DINO's centre), or None. It may have
        `set_step(step, total)`, `observe(targets) -> Terms`, `after_optimizer_step()` and
        `end_epoch(epoch)`, which the method calls at those times."""
        return None


@dataclass(frozen=True)
class PredictorPairs(Pairing):
    """SimSiam: each view's prediction against the other's projection, in both directions."""

    predictor: bool = True

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        e = batch.embeddings
        pairs = view_pairs(len(e.z), batch.n_global)
        return _each(batch, [(e.p[i], e.p[j], e.z[i], e.z[j]) for i, j in pairs])


@dataclass(frozen=True)
class Stacked(Pairing):
    """All views at once, (B, V, D), with the labels: SupCon, and multi-crop SimCLR with every
    crop in one matrix."""

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        return _each(batch, [(torch.stack(batch.embeddings.z, dim=1), batch.labels)])


@dataclass(frozen=True)
class Joint(Pairing):
    """All views at once, (V, B, D), with the number of global views (LeJEPA)."""

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        return _each(batch, [(torch.stack(batch.embeddings.z), batch.n_global)])


@dataclass(frozen=True)
class Classify(Pairing):
    """Supervised cross-entropy on the first view's logits (the baseline)."""

    classifier: bool = True
    min_views: int = 1

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        return _each(batch, [(batch.embeddings.logits, batch.labels)])


@dataclass(frozen=True)
class OnlineTarget(Pairing):
    """Each online view's projection (or prediction) against each other global view's target
    embedding (ReLIC; BYOL and MoCo v3 with `predictor=True`)."""

    target: bool = True

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        e = batch.embeddings
        online = e.p if self.predictor else e.z
        targets = _targets(e)
        pairs = online_target_pairs(len(online), batch.n_global)
        return _each(batch, [(online[i], targets[j]) for i, j in pairs])


@dataclass(frozen=True)
class QueuedTarget(Pairing):
    """MoCo v2: each view's query against each other global view's key, with the queue of that
    key's view as negatives; the keys of the global views are pushed after the step."""

    target: bool = True
    queue_size: int = 65536

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        e = batch.embeddings
        targets = _targets(e)
        pairs = online_target_pairs(len(e.z), batch.n_global)
        return _each(batch, [(e.z[i], targets[j], batch.queue.rows(j)) for i, j in pairs])

    def queue_count(self, n_global: int) -> int:
        return n_global

    def queue_entries(self, batch: Batch) -> Tensor | None:
        return torch.stack(_targets(batch.embeddings)[: batch.n_global]).detach()


@dataclass(frozen=True)
class NearestNeighbour(Pairing):
    """NNCLR: the support-set neighbour of each global view's projection against the other
    views' predictions, both directions; view 0's projections feed the support queue."""

    predictor: bool = True
    queue_size: int = 65536
    reads_labels: bool = True

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        e, support = batch.embeddings, batch.queue.rows(0)
        pairs = view_pairs(len(e.z), batch.n_global)
        directed = [(i, j) for i, j in pairs] + [(j, i) for i, j in pairs if j < batch.n_global]
        return _each(batch, [(e.z[i], e.p[j], support) for i, j in directed])

    def queue_entries(self, batch: Batch) -> Tensor | None:
        return batch.embeddings.z[0].detach()[None]

    def extra_terms(self, batch: Batch) -> Terms:
        """`nn_label_share`: how often view 0's neighbour carries the query's label."""
        labels, support = batch.labels, batch.queue.rows(0)
        if labels is None or support.shape[0] == 0:
            return {}
        known = batch.queue.row_labels()
        neighbours = known[nearest_neighbour_index(batch.embeddings.z[0], support)]
        return {"nn_label_share": (neighbours == labels).float().mean()}


@dataclass(frozen=True)
class CenteredTarget(Pairing):
    """DINO: the centred, sharpened distribution of each global view t from the EMA teacher
    against the student's distribution of every other view s ≠ t, local views included; the
    centre and teacher temperature come from the method's TeacherCentering, built from this
    pairing's fields (see `TeacherCentering` for their meaning)."""

    target: bool = True
    momentum: float = 0.9  # the centre's
    temp_start: float = 0.04  # teacher temperature where its warm-up starts
    temp_end: float = 0.04  # and after it
    warmup_steps: int | None = None  # replaces warmup_epochs when set
    warmup_epochs: int = 0
    epochs: int = 1  # of the run, for an epoch-wise warm-up

    def from_config(self, config: Any) -> CenteredTarget:
        """This pairing with DINO's centring options of `config`; the temperature ends at the
        loss's `teacher_temp`."""
        default_end = inspect.signature(DINOLoss).parameters["teacher_temp"].default
        return replace(
            self,
            momentum=config.center_momentum,
            temp_start=config.teacher_temp_start,
            temp_end=config.loss_options.get("teacher_temp", default_end),
            warmup_steps=config.teacher_temp_warmup_steps,
            warmup_epochs=config.teacher_temp_warmup_epochs,
            epochs=config.epochs,
        )

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        state = batch.state
        targets = _targets(batch.embeddings)[: batch.n_global]
        return _each(batch, [(batch.embeddings.z, targets, state.center, state.temperature)])

    def build_state(self, out_dim: int) -> nn.Module | None:
        return TeacherCentering(
            out_dim,
            self.momentum,
            self.temp_start,
            self.temp_end,
            self.warmup_steps,
            self.warmup_epochs,
            self.epochs,
        )


def _each(batch: Batch, inputs: list[tuple[Any, ...]]) -> tuple[list[Tensor], list[Terms]]:
    results = [call_loss(batch.criterion, *args) for args in inputs]
    return [loss for loss, _ in results], [terms for _, terms in results]


def _targets(e: Embeddings) -> list[Tensor]:
    if e.targets is None:
        raise ValueError("this method needs the EMA target's embeddings")
    return e.targets
