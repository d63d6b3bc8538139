"""SwAV (Caron et al., 2020): swapped prediction. The Sinkhorn codes of each global view are
the targets of the prototype scores of every other view.

Views are lists of (B, K) tensors, one per view: `scores` holds every view, global views first;
`codes` the codes of the G global views, in the same order (from :func:`sinkhorn`). Pairs are
(global view g, view v) with v ≠ g, and the loss is their mean, each pair a mean over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._common import check_positive, full_precision
from .dino import cross_view_mean, stack_views


@full_precision
def swav(
    scores: Sequence[Tensor],
    codes: Sequence[Tensor],
    temperature: float = 0.1,
    gather: bool = True,
) -> Tensor:
    """mean over pairs (g, v≠g) of −Σ_k codes[g] · log softmax(scores[v]/τ), batch means.

    No gradient flows into `codes`. The loss is a mean of per-sample terms (the codes' own
    exchange across ranks happens in :func:`sinkhorn`), so `gather` needs no exchange here.
    """
    del gather
    check_positive("temperature", temperature)
    logits = stack_views(scores, "scores")
    targets = stack_views(codes, "codes").detach()
    if targets.shape[1:] != logits.shape[1:] or targets.shape[0] > logits.shape[0]:
        raise ValueError(
            f"codes ({targets.shape[0]} views of {tuple(targets.shape[1:])}) must belong to the "
            f"first views of scores ({logits.shape[0]} of {tuple(logits.shape[1:])})"
        )
    dtype = torch.promote_types(logits.dtype, targets.dtype)
    log_probs = torch.log_softmax(logits.to(dtype) / temperature, dim=-1)
    return cross_view_mean(targets.to(dtype), log_probs)


class SwAVLoss(nn.Module):
    """Module form of :func:`swav`."""

    def __init__(self, temperature: float = 0.1, gather: bool = True):
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature, self.gather = temperature, gather

    def forward(self, scores: Sequence[Tensor], codes: Sequence[Tensor]) -> Tensor:
        return swav(scores, codes, self.temperature, self.gather)
