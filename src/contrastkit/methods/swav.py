"""SwAV (Caron et al., 2020, facebookresearch/swav `main_swav.py`): swapped prediction over
prototypes, with Sinkhorn-Knopp codes of the global views and an optional queue of past
global-view projections.

The projector's outputs are L2-normalised and scored against `prototypes` unit-norm vectors
(a `NormalizedLinear`, frozen for the first `freeze_steps` optimiser steps). Each global view's
codes come from Sinkhorn-Knopp on its scores, without gradients; the loss is
`swav(scores, codes, temperature)` over (global view g, view v ≠ g). With a queue, the scores
of the queued projections of view g (against the current prototypes) are prepended before
Sinkhorn and their codes dropped, as SwAV does once its queue is full; the queue takes each
step's normalised global-view projections from `queue_start_epoch` on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses.distributed import is_gathering, rank, world_size
from ..losses.sinkhorn import sinkhorn
from ..models.heads import NormalizedLinear
from .pairing import Batch, Pairing, Terms, call_loss

SWAV_OPTIONS = {
    "prototypes": "prototypes",
    "freeze_prototypes_steps": "freeze_steps",
    "sinkhorn_epsilon": "epsilon",
    "sinkhorn_iterations": "iterations",
    "swav_queue_size": "queue_size",
    "swav_queue_start_epoch": "queue_start_epoch",
}
"""The configuration keys of SwAV and the `SwappedPrediction` field each one sets."""


@dataclass(frozen=True)
class SwappedPrediction(Pairing):
    """SwAV: the codes of each global view are the targets of every other view's scores."""

    prototypes: int = 3000  # prototype vectors K
    freeze_steps: int = 0  # optimiser steps during which the prototypes do not move
    epsilon: float = 0.05  # Sinkhorn's entropic regularisation
    iterations: int = 3  # Sinkhorn-Knopp iterations
    queue_start_epoch: int = 15  # first epoch whose projections enter the queue

    def from_config(self, config: Any) -> SwappedPrediction:
        """This pairing with the `SWAV_OPTIONS` values of `config`."""
        return replace(self, **{field: getattr(config, key) for key, field in SWAV_OPTIONS.items()})

    def prototype_layer(self, dim: int) -> nn.Module | None:
        return NormalizedLinear(dim, self.prototypes, self.freeze_steps)

    def queue_count(self, n_global: int) -> int:
        return n_global

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Terms]]:
        z = [F.normalize(v, dim=1) for v in batch.embeddings.z]
        scores = [batch.prototypes(v) for v in z]
        codes = [self.codes(batch, g, scores[g]) for g in range(min(batch.n_global, len(z)))]
        loss, terms = call_loss(batch.criterion, scores, codes)
        return [loss], [terms]

    @torch.no_grad()
    def codes(self, batch: Batch, view: int, scores: Tensor) -> Tensor:
        """Sinkhorn codes of global view `view` from its scores, with the queue's rows of that
        view (this rank's share) prepended when the queue is full, their codes dropped."""
        gather = getattr(batch.criterion, "gather", True)
        queued = _queue_share(batch, view, gather)
        if queued is not None:
            scores = torch.cat([batch.prototypes(queued.to(scores.dtype)), scores])
        return sinkhorn(scores.detach(), self.epsilon, self.iterations, gather=gather)[
            -batch.embeddings.z[view].shape[0] :
        ]

    def queue_entries(self, batch: Batch) -> Tensor | None:
        if batch.epoch < self.queue_start_epoch:
            return None
        z = batch.embeddings.z[: batch.n_global]
        return torch.stack([F.normalize(v.detach(), dim=1) for v in z])


def _queue_share(batch: Batch, view: int, gather: bool) -> Tensor | None:
    """Rows of view `view`'s queue that this rank prepends, or None until the queue is full.

    The queue is the same on every rank (each push gathers all ranks' rows), so each rank takes
    every world-size-th row: Sinkhorn's sums over ranks then see each queued row once, and the
    codes equal those of one process holding the whole batch and the whole queue.
    """
    queue = batch.queue
    if queue is None or int(queue.filled) < queue.size:
        return None
    rows = queue.rows(view)
    if not is_gathering(gather):
        return rows
    ranks = world_size()
    if rows.shape[0] % ranks:
        raise ValueError(
            f"swav_queue_size={rows.shape[0]} must be a multiple of the world size {ranks}"
        )
    return rows[rank() :: ranks]


def check_swav_options(config: Any) -> None:
    """Raise ValueError naming the first invalid SwAV option and what would be valid."""
    for key, low in (
        ("prototypes", 1),
        ("freeze_prototypes_steps", 0),
        ("sinkhorn_iterations", 1),
        ("swav_queue_size", 0),
        ("swav_queue_start_epoch", 0),
    ):
        value = getattr(config, key)
        if value < low:
            raise ValueError(f"{key}={value}: must be >= {low}")
    if not config.sinkhorn_epsilon > 0:
        raise ValueError(f"sinkhorn_epsilon={config.sinkhorn_epsilon}: must be > 0")
    ranks = config.devices * config.num_nodes
    if config.swav_queue_size % ranks:
        raise ValueError(
            f"swav_queue_size={config.swav_queue_size}: must be a multiple of the "
            f"{ranks} devices (each rank prepends an equal share)"
        )
    if config.method != "swav":
        defaults = SwappedPrediction()
        for key, field in SWAV_OPTIONS.items():
            if getattr(config, key) != getattr(defaults, field):
                raise ValueError(f"{key}={getattr(config, key)}: only method swav uses it")
    elif config.queue_size is not None:
        raise ValueError(f"queue_size={config.queue_size}: swav's queue is set by swav_queue_size")
