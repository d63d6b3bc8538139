"""VICReg (Bardes et al., 2022) with the official code's normalisation of each term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_non_negative, check_pair, full_precision
from .distributed import gather_rows

_STD_EPS = 1e-4


def _variance_and_covariance(x: Tensor) -> tuple[Tensor, Tensor]:
    """Variance term mean_d relu(1 − sqrt(Var(x_d) + eps)) and covariance term
    Σ_{d≠e} Cov(x)_de² / D, both from one covariance matrix (unbiased).

    The variances are its diagonal, so no separate column reduction runs over the batch.
    """
    x = x - x.mean(dim=0)
    cov = x.T @ x / (x.shape[0] - 1)
    var = torch.diagonal(cov)
    variance = F.relu(1 - torch.sqrt(var + _STD_EPS)).mean()
    covariance = (cov.pow(2).sum() - var.pow(2).sum()) / x.shape[1]
    return variance, covariance


@full_precision
def vicreg_terms(z1: Tensor, z2: Tensor, gather: bool = True) -> dict[str, Tensor]:
    """The three unweighted VICReg terms: invariance, variance, covariance.

    Batch statistics span all ranks: every rank gathers both views and computes the same terms.
    """
    check_pair(z1, z2)
    x, y = gather_rows(z1, gather), gather_rows(z2, gather)
    (var_x, cov_x), (var_y, cov_y) = _variance_and_covariance(x), _variance_and_covariance(y)
    return {
        "invariance": F.mse_loss(x, y),
        "variance": (var_x + var_y) / 2,
        "covariance": cov_x + cov_y,
    }


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
    """Module form of :func:`vicreg`; `components` holds the last call's unweighted terms."""

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
        self.components: dict[str, Tensor] = {}

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        terms = vicreg_terms(z1, z2, self.gather)
        self.components = {k: v.detach() for k, v in terms.items()}
        return _weighted(terms, self.sim_weight, self.var_weight, self.cov_weight)
