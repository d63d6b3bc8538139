"""Which training samples a head sees: a validation split carved from the training split (for
selection; the test split never chooses anything), and few-shot label subsets."""

from __future__ import annotations

import torch
from torch import Tensor

from ..data import holdout_split
from .errors import EvaluationError


def validation_split(
    labels: Tensor, fraction: float, how: str = "class_tail", seed: int = 0
) -> tuple[Tensor, Tensor]:
    """(kept, held-out) sorted indices: the last `fraction` of each class (`class_tail`, as the
    online probe's split), or a seeded random `fraction` of all samples (`random`)."""
    if how == "class_tail":
        keep, held = holdout_split(labels, fraction)
    elif how == "random":
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        count = round(len(labels) * fraction)
        held, keep = order[:count].sort().values, order[count:].sort().values
    else:
        raise EvaluationError(f"val_split={how!r}: valid: class_tail, random")
    if len(held) == 0 or len(keep) == 0:
        raise EvaluationError(
            f"val_fraction={fraction}: leaves {len(keep)} training and {len(held)} validation "
            f"samples of {len(labels)}"
        )
    return keep, held


def few_shot(
    labels: Tensor,
    indices: Tensor,
    label_fraction: float = 1.0,
    per_class: int = 0,
    seed: int = 0,
) -> Tensor:
    """The sorted subset of `indices` to train on: `per_class` samples of each class, or
    round(`label_fraction` × class size) (at least 1) of each class, drawn with `seed`.

    Fixed for a seed, so every method and protocol sees the same labelled images.
    """
    if not 0 < label_fraction <= 1:
        raise EvaluationError(f"label_fraction={label_fraction}: must be in (0, 1]")
    if per_class < 0:
        raise EvaluationError(f"per_class={per_class}: must be >= 0")
    if label_fraction == 1 and per_class == 0:
        return indices
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    mine = labels[indices]
    for value in torch.unique(mine):
        members = indices[mine == value]
        count = per_class or max(1, round(len(members) * label_fraction))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(chosen).sort().values
