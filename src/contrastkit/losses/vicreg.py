"""VICReg (Bardes et al., 2022) with the official code's normalisation of each term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._common import check_non_negative, check_pair, full_precision, off_diagonal_square_sum
from .distributed import gather_rows

_STD_EPS = 1e-4


def _centred_covariance(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The centred batch, its column means and its unbiased covariance matrix."""
    mean = x.mean(dim=0)
    centred = x - mean
    return centred, mean, torch.mm(centred.T, centred).div_(x.shape[0] - 1)


def _variance_covariance_terms(cov: Tensor) -> tuple[Tensor, Tensor]:
    """mean_d relu(1 − sqrt(Var_d + eps)) and Σ_{d≠e} Cov_de² / D, from one covariance matrix:
    the variances are its diagonal, so no separate column reduction runs over the batch."""
    variance = F.relu(1 - torch.sqrt(torch.diagonal(cov) + _STD_EPS)).mean()
    return variance, off_diagonal_square_sum(cov) / cov.shape[0]


def _covariance_gradient(cov: Tensor, grad_variance: Tensor, grad_covariance: Tensor) -> Tensor:
    """d(terms)/d(cov) as one symmetric D×D matrix: 2·Cov_de/D off the diagonal, and the
    variance hinge's −[σ_d < 1]/(2σ_d·D) on it."""
    d = cov.shape[0]
    grad = cov * (2 * grad_covariance / d)
    std = torch.sqrt(torch.diagonal(cov) + _STD_EPS)
    torch.diagonal(grad).copy_(-(std < 1).to(cov.dtype) / (2 * std * d) * grad_variance)
    return grad


class _VICRegTerms(torch.autograd.Function):
    """The three terms with the backward written out: per view one matrix product,
    ∂/∂x = 2·x_c·G/(N−1) + ∂invariance/∂x, where autograd runs a dozen kernels more.

    The centring's own backward (subtracting the gradient's column mean) is omitted because
    it is exactly zero: the column means of x_c·G are (mean of x_c)·G = 0.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor):  # type: ignore[override]
        (xc, mean_x, cov_x), (yc, mean_y, cov_y) = _centred_covariance(x), _centred_covariance(y)
        var_x, covariance_x = _variance_covariance_terms(cov_x)
        var_y, covariance_y = _variance_covariance_terms(cov_y)
        invariance = F.mse_loss(x, y)
        ctx.save_for_backward(xc, yc, mean_x - mean_y, cov_x, cov_y)
        return invariance, (var_x + var_y) / 2, covariance_x + covariance_y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_inv: Tensor, grad_var: Tensor, grad_cov: Tensor):  # type: ignore[override]
        xc, yc, mean_gap, cov_x, cov_y = ctx.saved_tensors
        n = xc.shape[0]
        # mse_loss's gradient, 2(x − y)/(N·D), with x − y rebuilt from the centred views.
        difference = torch.sub(xc, yc).add_(mean_gap).mul_(2 * grad_inv / xc.numel())
        grads = []
        for centred, cov, sign in ((xc, cov_x, 1), (yc, cov_y, -1)):
            g = _covariance_gradient(cov, grad_var / 2, grad_cov)
            grads.append(torch.addmm(difference, centred, g, beta=sign, alpha=2 / (n - 1)))
        return grads[0], grads[1]


@full_precision
def vicreg_terms(z1: Tensor, z2: Tensor, gather: bool = True) -> dict[str, Tensor]:
    """The three unweighted VICReg terms: invariance, variance, covariance.

    Batch statistics span all ranks: every rank gathers both views and computes the same terms.
    """
    check_pair(z1, z2)
    terms = _VICRegTerms.apply(gather_rows(z1, gather), gather_rows(z2, gather))
    return dict(zip(("invariance", "variance", "covariance"), terms, strict=True))


def vicreg(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gather: bool = True,
) -> Tensor:
    """Weighted VICReg loss: sim·invariance + var·variance + cov·covariance."""
    _check_weights(sim_weight, var_weight, cov_weight)
    return _weighted(vicreg_terms(z1, z2, gather), sim_weight, var_weight, cov_weight)


def _check_weights(sim_weight: float, var_weight: float, cov_weight: float) -> None:
    for name, value in (("sim_weight", sim_weight), ("var_weight", var_weight)):
        check_non_negative(name, value)
    check_non_negative("cov_weight", cov_weight)


def _weighted(
    terms: dict[str, Tensor], sim_weight: float, var_weight: float, cov_weight: float
) -> Tensor:
    return (
        sim_weight * terms["invariance"]
        + var_weight * terms["variance"]
        + cov_weight * terms["covariance"]
    )


class VICRegLoss(nn.Module):
    """Module form of :func:`vicreg`; `forward_with_terms` also returns the unweighted terms,
    for the log."""

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        gather: bool = True,
    ):
        super().__init__()
        _check_weights(sim_weight, var_weight, cov_weight)
        self.sim_weight, self.var_weight, self.cov_weight = sim_weight, var_weight, cov_weight
        self.gather = gather

    def forward_with_terms(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        terms = vicreg_terms(z1, z2, self.gather)
        loss = _weighted(terms, self.sim_weight, self.var_weight, self.cov_weight)
        return loss, {k: v.detach() for k, v in terms.items()}

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return self.forward_with_terms(z1, z2)[0]
