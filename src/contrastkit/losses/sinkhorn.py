"""Sinkhorn-Knopp codes (Caron et al., 2020, SwAV; Cuturi, 2013): an equipartition of the batch
over the prototypes, the targets of SwAV's swapped prediction."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import check_embeddings, check_positive
from .distributed import is_gathering, max_over_ranks, sum_over_ranks, world_size


def _log_sum_exp_over_ranks(x: Tensor, dim: int | None, gather: bool) -> Tensor:
    """log Σ exp(x) along `dim` (all of x when None), the sum running over every rank."""
    top = max_over_ranks(x.amax() if dim is None else x.amax(dim=dim, keepdim=True), gather)
    shifted = torch.exp(x - top)
    total = shifted.sum() if dim is None else shifted.sum(dim=dim, keepdim=True)
    return top + torch.log(sum_over_ranks(total, gather))


@torch.no_grad()
def sinkhorn(
    scores: Tensor, epsilon: float = 0.05, iterations: int = 3, gather: bool = True
) -> Tensor:
    """Soft codes (B, K) from prototype scores (B, K): every row sums to 1, and over the global
    batch of N rows every prototype receives N/K in total (exactly after infinitely many
    iterations; SwAV's 3 come close when prototypes outnumber the batch, as in its recipes).

    SwAV's iteration: Q = exp(scores/ε), scaled to sum 1, then `iterations` times: columns to
    1/K each, rows to 1/N each; returned as N·Q. The column sums run over all ranks when
    `gather` is true, so each rank gets its rows of the single-process codes. It runs in the
    log domain (each scaling subtracts a log-sum-exp), so no score scale overflows exp or leaves
    a row of zeros. Computes without gradients, in float64 for float64 scores, else float32.
    """
    check_embeddings(scores, "scores", min_batch=1)
    check_positive("epsilon", epsilon)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
    dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    log_q = scores.detach().to(dtype) / epsilon
    log_rows = math.log(scores.shape[0] * (world_size() if is_gathering(gather) else 1))
    log_prototypes = math.log(scores.shape[1])
    log_q -= _log_sum_exp_over_ranks(log_q, None, gather)
    for _ in range(iterations):
        log_q -= _log_sum_exp_over_ranks(log_q, 0, gather) + log_prototypes
        log_q -= torch.logsumexp(log_q, dim=1, keepdim=True) + log_rows
    return torch.exp(log_q + log_rows)
