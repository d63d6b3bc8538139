"""Gathering across ranks with gradients that flow back to the rank that produced each row.

Every loss reaches other ranks through the two functions here, so all of them agree on one
convention: each rank computes a loss whose mean over ranks equals the single-process loss on
the concatenated batch, and the backward pass sums gradients over ranks. After DDP averages
parameter gradients over the world, each rank's rows receive exactly the single-process gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of ranks, 1 when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank, 0 when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_gathering(gather: bool) -> bool:
    """Whether a loss asked to gather actually has other ranks to gather from."""
    return gather and world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks and keeps this rank's rows.

    torch.distributed.nn's all_gather uses reduce_scatter in its backward, which gloo lacks;
    an all_reduce followed by a slice works on every backend.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rows = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_rows(x: Tensor, gather: bool = True) -> Tensor:
    """Concatenate `x` over all ranks along dim 0 (rank order), differentiably.

    Returns `x` itself when not gathering. Every rank must pass the same number of rows.
    """
    if not is_gathering(gather):
        return x
    return _GatherWithGrad.apply(x)


def row_offset(local_rows: int, gather: bool = True) -> int:
    """Index of this rank's first row inside the gathered tensor."""
    return rank() * local_rows if is_gathering(gather) else 0


def own_columns(rows: int, device: torch.device, gather: bool = True) -> Tensor:
    """Column of each of this rank's `rows` rows inside the gathered tensor: offset + i."""
    return torch.arange(rows, device=device) + row_offset(rows, gather)


def gather_views(views: Sequence[Tensor], gather: bool = True) -> tuple[Tensor, list[Tensor]]:
    """Every rank's rows of each view, view after view, and where this rank's rows sit there.

    Returns the candidates [view 0 of all ranks; view 1 of all ranks; ...] and, per view k, the
    column k·T + offset + i of local row i (T rows per view over all ranks).
    """
    gathered = [gather_rows(v, gather) for v in views]
    own = own_columns(views[0].shape[0], views[0].device, gather)
    return torch.cat(gathered), [own + k * gathered[0].shape[0] for k in range(len(views))]


def gather_no_grad(x: Tensor, gather: bool = True) -> Tensor:
    """Concatenate `x` over all ranks without a gradient path (for weights and statistics)."""
    if not is_gathering(gather):
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


def sum_over_ranks(x: Tensor, gather: bool = True) -> Tensor:
    """`x` summed over all ranks without a gradient path (for marginals and centres)."""
    if not is_gathering(gather):
        return x.detach()
    total = x.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def max_over_ranks(x: Tensor, gather: bool = True) -> Tensor:
    """The elementwise maximum of `x` over all ranks, without a gradient path."""
    if not is_gathering(gather):
        return x.detach()
    top = x.detach().clone()
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    return top


class _MeanOverRanks(torch.autograd.Function):
    """all_reduce mean whose backward is the mean of the incoming gradients over ranks.

    Each rank's loss reads the same mean, so the gradient of the sum of the rank losses with
    respect to one rank's contribution is Σ_ranks g / world: one all_reduce and a division.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x / dist.get_world_size()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad / dist.get_world_size()


def mean_over_ranks(x: Tensor, gather: bool = True) -> Tensor:
    """The mean of `x` over all ranks (every rank passes the same shape), differentiably.

    A statistic of the global batch from per-rank means over equal numbers of rows.
    """
    if not is_gathering(gather):
        return x
    return _MeanOverRanks.apply(x)


def broadcast_from_first(x: Tensor) -> Tensor:
    """Rank 0's `x` on every rank (no gradient), so that random draws agree across ranks."""
    if world_size() > 1:
        x = x.contiguous()
        dist.broadcast(x, src=0)
    return x
