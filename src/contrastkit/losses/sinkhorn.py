"""Sinkhorn-Knopp codes (Caron et al., 2020, SwAV; Cuturi, 2013): an equipartition of the batch
over the prototypes, the targets of SwAV's swapped prediction."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import check_embeddings, check_positive
from .distributed import is_gathering, max_over_ranks, sum_over_ranks, world_size


@torch.no_grad()
def sinkhorn(
    scores: Tensor, epsilon: float = 0.05, iterations: int = 3, gather: bool = True
) -> Tensor:
    """Soft codes (B, K) from prototype scores (B, K): every row sums to 1, and over the global
    batch of N rows every prototype receives N/K in total (exactly after infinitely many
    iterations; SwAV's 3 come close when prototypes outnumber the batch, as in its recipes).

    SwAV's iteration: Q = exp(scores/ε), scaled to sum 1, then `iterations` times: columns to
    1/K each, rows to 1/N each; returned as N·Q. The column sums run over all ranks when
    `gather` is true, so each rank gets its rows of the single-process codes. The global
    maximum score is subtracted first: it cancels in the first scaling, and exp cannot
    overflow. A row whose every score lies more than ~87·ε (float32; ~708·ε in float64) below
    that maximum underflows to codes of 0 (cosine scores with ε ≥ 0.025 never do). Computes
    without gradients, in float64 for float64 scores and in float32 otherwise.
    """
    check_embeddings(scores, "scores", min_batch=1)
    check_positive("epsilon", epsilon)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
    dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    s = scores.detach().to(dtype)
    rows = s.shape[0] * (world_size() if is_gathering(gather) else 1)
    prototypes = s.shape[1]
    q = torch.exp((s - max_over_ranks(s.max(), gather)) / epsilon)
    tiny = torch.finfo(dtype).tiny  # a prototype (or row) exp left at 0 keeps codes 0, not NaN
    q /= sum_over_ranks(q.sum(), gather)
    for _ in range(iterations):
        q /= sum_over_ranks(q.sum(dim=0, keepdim=True), gather).clamp_min(tiny) * prototypes
        q /= q.sum(dim=1, keepdim=True).clamp_min(tiny) * rows
    return q * rows
