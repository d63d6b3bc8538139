"""Barlow Twins (Zbontar et al., 2021): drive the cross-correlation matrix to the identity."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._common import check_non_negative, check_pair, full_precision
from .distributed import gather_rows

_BN_EPS = 1e-5


def _standardize(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-dimension standardisation over the batch, as BatchNorm1d(affine=False) in training:
    the standardised batch and the saved mean and 1/σ its backward needs. The batch-norm kernel
    computes column statistics of a row-major batch 3× faster than torch.mean/var over dim 0."""
    return torch.native_batch_norm(z, None, None, None, None, True, 0.0, _BN_EPS)


def _standardize_backward(grad: Tensor, z: Tensor, mean: Tensor, inv_std: Tensor) -> Tensor:
    return torch.ops.aten.native_batch_norm_backward(
        grad, z, None, None, None, mean, inv_std, True, _BN_EPS, [True, False, False]
    )[0]


class _BarlowTwinsTerms(torch.autograd.Function):
    """Both terms from one cross-correlation, with the backward written out.

    Autograd's version adds a dozen small kernels (the diagonal, squares, sums and their
    gradients) around the two batch norms and three matrix products; lightly's runs them too.
    """

    @staticmethod
    def forward(ctx, z1: Tensor, z2: Tensor):  # type: ignore[override]
        (a, mean_a, inv_a), (b, mean_b, inv_b) = _standardize(z1), _standardize(z2)
        c = torch.mm(a.T, b).div_(a.shape[0])
        diagonal = torch.diagonal(c)
        squares = diagonal.square().sum()
        ctx.save_for_backward(z1, z2, a, b, mean_a, inv_a, mean_b, inv_b, c)
        return (1 - diagonal).square().sum(), torch.linalg.vector_norm(c).square() - squares

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_on: Tensor, grad_off: Tensor):  # type: ignore[override]
        z1, z2, a, b, mean_a, inv_a, mean_b, inv_b, c = ctx.saved_tensors
        # d/dC of Σ(1 − C_ii)² on the diagonal and of Σ_{i≠j} C_ij² off it, over N from C's mean.
        grad_c = c * (2 * grad_off)
        torch.diagonal(grad_c).copy_(torch.diagonal(c).sub(1).mul_(2 * grad_on))
        grad_c.div_(a.shape[0])
        grad_z1 = grad_z2 = None
        if ctx.needs_input_grad[0]:
            grad_z1 = _standardize_backward(b @ grad_c.T, z1, mean_a, inv_a)
        if ctx.needs_input_grad[1]:
            grad_z2 = _standardize_backward(a @ grad_c, z2, mean_b, inv_b)
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
    """Module form of :func:`barlow_twins`; `components` holds the last call's unweighted terms."""

    def __init__(self, lambd: float = 5e-3, gather: bool = True):
        super().__init__()
        check_non_negative("lambd", lambd)
        self.lambd, self.gather = lambd, gather
        self.components: dict[str, Tensor] = {}

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        terms = barlow_twins_terms(z1, z2, self.gather)
        self.components = {k: v.detach() for k, v in terms.items()}
        return terms["on_diagonal"] + self.lambd * terms["off_diagonal"]
