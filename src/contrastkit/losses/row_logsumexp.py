"""Row-wise log-sum-exp of a similarity matrix, blockwise, with a hand-written backward.

Every softmax-style contrastive loss (InfoNCE, NT-Xent, DCL, DHEL, SupCon, uniformity) is
LSE_j(a_i·b_j) over the columns j a row may see, minus terms that are O(N·D) to compute. Autograd
on the dense formula keeps several N×N temporaries (logits, masked copy, log-softmax, their
gradients); here each block of rows is computed in place in one cache-sized buffer, and only the
exponentials are kept for the backward (`chunk_size=None`), or nothing at all and the blocks are
recomputed (`chunk_size=k`: memory k×N instead of N×N, one extra matrix product). Measured in
benchmarks/losses.py and benchmarks/large_batch.py; no library provides this for CPU and CUDA.
The block sizing and the checkpointed `blockwise_sum` serve the other blockwise losses too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

#: Rows per block when the caller does not chunk: about 8 MiB of float32 per block, which
#: stays in cache between the in-place passes.
_BLOCK_ELEMENTS = 2**21


def check_chunk_size(chunk_size: int | None) -> None:
    """Require None (dense) or a positive number of rows per chunk."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def row_logsumexp(
    anchors: Tensor,
    candidates: Tensor,
    excluded: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """LSE_{j ∉ excluded[i]}(anchors_i · candidates_j) for every row i, shape (M,).

    `excluded` is an (M, K) index tensor of the columns each row must not see (its own column,
    its positive), or None. `chunk_size=None` keeps the M×N exponentials for the backward;
    an integer k keeps nothing and recomputes blocks of k rows there, so memory grows with
    k·N, not M·N. Both give the same values and gradients.
    """
    check_chunk_size(chunk_size)
    return _RowLogSumExp.apply(anchors, candidates, excluded, chunk_size)


def block_rows(rows: int, cols: int, chunk_size: int | None) -> int:
    """Rows per block: the caller's chunk size, or about 8 MiB of float32 per block."""
    return chunk_size or max(1, min(rows, _BLOCK_ELEMENTS // max(cols, 1)))


def _masked_logits(a: Tensor, b: Tensor, excluded: Tensor | None, out: Tensor) -> Tensor:
    """a·bᵀ into `out`, −inf at each row's excluded columns."""
    torch.mm(a, b.T, out=out)
    return out if excluded is None else out.scatter_(1, excluded, float("-inf"))


def _shifted_exp(
    a: Tensor, b: Tensor, excluded: Tensor | None, out: Tensor
) -> tuple[Tensor, Tensor]:
    """Fill `out` with exp(a·bᵀ − rowmax), excluded columns 0; return (rowmax, rowsum)."""
    row_max = _masked_logits(a, b, excluded, out).amax(dim=1)
    # A row with every column excluded has max −inf; shift it by 0 so it stays exp(−inf) = 0.
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    out.sub_(row_max[:, None]).exp_()
    return row_max, out.sum(dim=1)


class _RowLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, excluded: Tensor | None, chunk_size: int | None):  # type: ignore[override]
        rows, cols = a.shape[0], b.shape[0]
        step = block_rows(rows, cols, chunk_size)
        keep = chunk_size is None
        exps = a.new_empty(rows, cols) if keep else a.new_empty(min(step, rows), cols)
        lse, sums = a.new_empty(rows), a.new_empty(rows)
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            out = exps[start:stop] if keep else exps[: stop - start]
            part = excluded[start:stop] if excluded is not None else None
            row_max, sums[start:stop] = _shifted_exp(a[start:stop], b, part, out)
            lse[start:stop] = row_max + sums[start:stop].log()
        ctx.step, ctx.keep = step, keep
        ctx.save_for_backward(a, b, excluded, sums if keep else lse, exps if keep else None)
        return lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lse: Tensor):  # type: ignore[override]
        # d lse_i / d s_ij = softmax_ij; the upstream gradient joins as a row weight.
        a, b, excluded, normalizer, exps = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        if ctx.keep:  # softmax = exps / row sums
            weight = (grad_lse / normalizer)[:, None]
            grad_a = (exps @ b) * weight if need_a else None
            grad_b = exps.T @ (a * weight) if need_b else None
            return grad_a, grad_b, None, None
        # Recompute each block's softmax directly as exp(s − lse): one pass, no max or sum.
        weight = grad_lse[:, None]
        grad_a = torch.empty_like(a) if need_a else None
        grad_b = torch.zeros_like(b) if need_b else None
        softmax = a.new_empty(min(ctx.step, a.shape[0]), b.shape[0])
        for start in range(0, a.shape[0], ctx.step):
            stop = min(start + ctx.step, a.shape[0])
            part = excluded[start:stop] if excluded is not None else None
            block = _masked_logits(a[start:stop], b, part, softmax[: stop - start])
            block.sub_(normalizer[start:stop, None]).exp_()
            if need_a:
                torch.mm(block, b, out=grad_a[start:stop]).mul_(weight[start:stop])
            if need_b:
                grad_b.addmm_(block.T, a[start:stop] * weight[start:stop])
        return grad_a, grad_b, None, None


def blockwise_sum(
    block_fn: Callable[..., tuple[Tensor, ...]],
    rows: Sequence[Tensor],
    shared: Sequence[Tensor | float],
    chunk_size: int | None,
) -> tuple[Tensor, ...]:
    """Σ over blocks of `chunk_size` rows of block_fn(*row_blocks, *shared), term by term.

    For losses that are sums over rows of a similarity matrix but have no kernel of their own
    (KCL): each block runs under activation checkpointing, so only one block's N-wide
    temporaries live at a time, forward or backward, and the gradient is unchanged.
    `chunk_size=None` runs the whole batch as one block without checkpointing.
    """
    check_chunk_size(chunk_size)
    if chunk_size is None:
        return block_fn(*rows, *shared)
    totals: tuple[Tensor, ...] | None = None
    for start in range(0, rows[0].shape[0], chunk_size):
        block = [r[start : start + chunk_size] for r in rows]
        parts = checkpoint(block_fn, *block, *shared, use_reentrant=False)
        totals = (
            parts if totals is None else tuple(t + p for t, p in zip(totals, parts, strict=True))
        )
    assert totals is not None
    return totals
