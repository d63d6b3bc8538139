"""Barlow Twins (Zbontar et al., 2021): drive the cross-correlation matrix to the identity."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._common import check_non_negative, check_pair, full_precision, off_diagonal_square_sum
from .distributed import gather_rows

_BN_EPS = 1e-5


def _standardize(z: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension standardisation over the batch, as BatchNorm1d(affine=False) in training,
    and 1/σ. The batch-norm kernel computes column statistics of a row-major batch 3× faster
    than torch.mean/var over dim 0."""
    standardized, _, inv_std = torch.native_batch_norm(
        z, None, None, None, None, True, 0.0, _BN_EPS
    )
    return standardized, inv_std


class _BarlowTwinsTerms(torch.autograd.Function):
    """Both terms from one cross-correlation C = âᵀb̂/N, with the backward written out.

    Batch norm's backward, r·(g − mean(g) − â·mean(g·â)), simplifies here because g = b̂·Hᵀ
    (H = dL/dC / N): mean(g) = mean(b̂)·Hᵀ = 0, and mean(g·â) is the row sums of C ⊙ H, a D×D
    quantity. So each view's gradient is one matrix product and one pass, where autograd (and
    lightly) run the batch-norm backward's three passes plus a dozen small kernels.
    """

    @staticmethod
    def forward(ctx, z1: Tensor, z2: Tensor):  # type: ignore[override]
        (a, inv_a), (b, inv_b) = _standardize(z1), _standardize(z2)
        c = torch.mm(a.T, b).div_(a.shape[0])
        ctx.save_for_backward(a, b, inv_a, inv_b, c)
        return (1 - torch.diagonal(c)).square().sum(), off_diagonal_square_sum(c)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_on: Tensor, grad_off: Tensor):  # type: ignore[override]
        a, b, inv_a, inv_b, c = ctx.saved_tensors
        # H = d/dC of Σ(1 − C_ii)² on the diagonal and of Σ_{i≠j} C_ij² off it, over N.
        h = c * (2 * grad_off)
        torch.diagonal(h).copy_(torch.diagonal(c).sub(1).mul_(2 * grad_on))
        h.div_(a.shape[0])
        ch = c * h
        grad_z1 = grad_z2 = None
        if ctx.needs_input_grad[0]:  # r_a ⊙ (b̂·Hᵀ − â ⊙ rowsum(C⊙H))
            grad_z1 = torch.mm(b, h.T * inv_a).addcmul_(a, ch.sum(dim=1) * inv_a, value=-1)
        if ctx.needs_input_grad[1]:  # r_b ⊙ (â·H − b̂ ⊙ colsum(C⊙H))
            grad_z2 = torch.mm(a, h * inv_b).addcmul_(b, ch.sum(dim=0) * inv_b, value=-1)
        return grad_z1, grad_z2


@full_precision
def barlow_twins_terms(z1: Tensor, z2: Tensor, gather: bool = True) -> dict[str, Tensor]:
    """Unweighted terms: Σ(1 − C_ii)² (`on_diagonal`) and Σ_{i≠j} C_ij² (`off_diagonal`).

    C = ẑ1ᵀẑ2 / N of the batch-standardised views over the whole (gathered) batch, so every
    rank computes the same matrix.
    """
    check_pair(z1, z2)
    on, off = _BarlowTwinsTerms.apply(gather_rows(z1, gather), gather_rows(z2, gather))
    return {"on_diagonal": on, "off_diagonal": off}


def barlow_twins(z1: Tensor, z2: Tensor, lambd: float = 5e-3, gather: bool = True) -> Tensor:
    """Σ(1 − C_ii)² + λ·Σ_{i≠j} C_ij², with no extra scale."""
    check_non_negative("lambd", lambd)
    terms = barlow_twins_terms(z1, z2, gather)
    return terms["on_diagonal"] + lambd * terms["off_diagonal"]


class BarlowTwinsLoss(nn.Module):
    """Module form of :func:`barlow_twins`; `forward_with_terms` also returns the unweighted
    terms, for the log."""

    def __init__(self, lambd: float = 5e-3, gather: bool = True):
        super().__init__()
        check_non_negative("lambd", lambd)
        self.lambd, self.gather = lambd, gather

    def forward_with_terms(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        terms = barlow_twins_terms(z1, z2, self.gather)
        loss = terms["on_diagonal"] + self.lambd * terms["off_diagonal"]
        return loss, {k: v.detach() for k, v in terms.items()}

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return self.forward_with_terms(z1, z2)[0]
