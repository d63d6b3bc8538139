"""DHEL and KCL (Koromilas et al., 2024): uniformity from one view's energy, or from a kernel."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import (
    TemperatureLoss,
    check_pair,
    check_positive,
    full_precision,
    index_mask,
    normalize,
)
from .distributed import gather_rows, own_columns
from .row_logsumexp import blockwise_sum, check_chunk_size, row_logsumexp


@full_precision
def dhel(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.3,
    both_views: bool = False,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """Decoupled hyperspherical energy loss: mean_i[−u_i·v_i/τ + LSE_{j≠i}(u_i·u_j/τ)].

    `both_views=True` adds LSE_{j≠i}(v_i·v_j/τ), as the authors' code does by default.
    `chunk_size=k` computes the logits k rows at a time, in memory linear in the batch.
    """
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    u, v = normalize(z1), normalize(z2)
    own = own_columns(u.shape[0], u.device, gather)[:, None]
    per_anchor = row_logsumexp(u / temperature, gather_rows(u, gather), own, chunk_size)
    if both_views:
        per_anchor = per_anchor + row_logsumexp(
            v / temperature, gather_rows(v, gather), own, chunk_size
        )
    return (per_anchor - (u * v).sum(dim=1) / temperature).mean()


def _kernel_row_sums(a: Tensor, own: Tensor, a_all: Tensor, t: float) -> tuple[Tensor]:
    """Σ_i Σ_{j≠i} K(a_i, a_j) over the rows a, K = exp(−t‖a_i − a_j‖²) = exp(−t(2 − 2a_i·a_j))."""
    kernel = torch.exp(-t * (2 - 2 * (a @ a_all.T)))
    return (kernel.masked_fill(index_mask(own, a_all.shape[0]), 0.0).sum(),)


@full_precision
def kcl(
    z1: Tensor,
    z2: Tensor,
    t: float = 2.0,
    gamma: float = 16.0,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """Kernel contrastive loss: −mean_i K(u_i, v_i) + γ·½[E(u) + E(v)], E the mean kernel over i≠j.

    The squared distance on the sphere is 2 − 2a·b, so no square root (and no NaN gradient at
    coincident points) appears. `chunk_size=k` sums the kernels k rows at a time, in memory
    linear in the batch.
    """
    check_pair(z1, z2)
    check_positive("t", t)
    check_positive("gamma", gamma)
    u, v = normalize(z1), normalize(z2)
    own = own_columns(u.shape[0], u.device, gather)
    alignment = torch.exp(-t * (2 - 2 * (u * v).sum(dim=1)))
    u_all, v_all = gather_rows(u, gather), gather_rows(v, gather)
    energy = sum(
        blockwise_sum(_kernel_row_sums, (a, own), (a_all, t), chunk_size)[0]
        for a, a_all in ((u, u_all), (v, v_all))
    )
    return gamma * energy / (2 * u.shape[0] * (u_all.shape[0] - 1)) - alignment.mean()


class DHELLoss(TemperatureLoss):
    """Module form of :func:`dhel`."""

    def __init__(
        self,
        temperature: float = 0.3,
        both_views: bool = False,
        gather: bool = True,
        chunk_size: int | None = None,
    ):
        super().__init__(temperature, gather, chunk_size)
        self.both_views = both_views

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return dhel(z1, z2, self.temperature, self.both_views, self.gather, self.chunk_size)


class KCLLoss(nn.Module):
    """Module form of :func:`kcl`."""

    def __init__(
        self,
        t: float = 2.0,
        gamma: float = 16.0,
        gather: bool = True,
        chunk_size: int | None = None,
    ):
        super().__init__()
        check_positive("t", t)
        check_positive("gamma", gamma)
        check_chunk_size(chunk_size)
        self.t, self.gamma, self.gather, self.chunk_size = t, gamma, gather, chunk_size

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return kcl(z1, z2, self.t, self.gamma, self.gather, self.chunk_size)
