"""LeJEPA (Balestriero & LeCun, 2025): view invariance plus SIGReg, the sketched test that the
embeddings are an isotropic Gaussian.

SIGReg projects the embeddings on S random unit directions and compares, on each, the empirical
characteristic function φ̂(t) = mean_n e^{i·t·x_n} with the standard normal's e^{−t²/2} by the
Epps–Pulley statistic N·∫ |φ̂(t) − e^{−t²/2}|² e^{−t²/2} dt. The integrand is even in t, so it is
integrated on [0, t_max] with the trapezoid rule and doubled (as rbalestr-lab/lejepa does).
Under DDP, φ̂ is the mean over the global batch and N its size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._common import check_non_negative, check_positive, full_precision
from .distributed import broadcast_from_first, is_gathering, mean_over_ranks, world_size

_UNIT_TOLERANCE = 1e-2  # bfloat16 rounding moves a unit column by up to ~4e-3


def draw_directions(
    dim: int,
    slices: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """(dim, slices) random unit columns, the same on every rank.

    Drawn on the CPU (from `generator`, or torch's global one) and then rank 0's draw is
    broadcast, so ranks agree even when their random states differ.
    """
    a = torch.randn(dim, slices, generator=generator, dtype=torch.float64)
    a = (a / torch.linalg.vector_norm(a, dim=0)).to(device=device, dtype=dtype)
    return broadcast_from_first(a)


def trapezoid_grid(knots: int, t_max: float) -> tuple[Tensor, Tensor]:
    """The knots t on [0, t_max] and their weights: trapezoid weights doubled for the even
    integrand (2·dt inside, dt at both ends), times the window e^{−t²/2}."""
    t = torch.linspace(0, t_max, knots, dtype=torch.float64)
    dt = t_max / (knots - 1)
    weights = torch.full((knots,), 2 * dt, dtype=torch.float64)
    weights[[0, -1]] = dt
    return t, weights * torch.exp(-t.square() / 2)


@full_precision
def sigreg(
    z: Tensor,
    directions: Tensor | None = None,
    knots: int = 17,
    t_max: float = 3.0,
    slices: int = 256,
    gather: bool = True,
) -> Tensor:
    """The Epps–Pulley statistic of z (..., N, D) along each direction, averaged over the leading
    dimensions and the directions.

    `directions` is a (D, S) tensor of unit columns; None draws `slices` of them from torch's
    global random state (rank 0's draw on every rank).
    """
    if z.ndim < 2 or z.shape[-2] < 1:
        raise ValueError(f"z must have shape (..., N, D) with N >= 1, got {tuple(z.shape)}")
    if knots < 2:
        raise ValueError(f"knots must be at least 2, got {knots}")
    check_positive("t_max", t_max)
    if directions is None:
        directions = draw_directions(z.shape[-1], slices, device=z.device, dtype=z.dtype)
    _check_directions(directions, z.shape[-1])
    t, weights = (x.to(device=z.device, dtype=z.dtype) for x in trapezoid_grid(knots, t_max))
    x_t = (z @ directions.to(z.dtype)).unsqueeze(-1) * t  # (..., N, S, K)
    cos_mean = mean_over_ranks(torch.cos(x_t).mean(dim=-3), gather)  # (..., S, K)
    sin_mean = mean_over_ranks(torch.sin(x_t).mean(dim=-3), gather)
    error = (cos_mean - torch.exp(-t.square() / 2)).square() + sin_mean.square()
    n = z.shape[-2] * (world_size() if is_gathering(gather) else 1)
    return (error @ weights * n).mean()


def _check_directions(directions: Tensor, dim: int) -> None:
    if directions.ndim != 2 or directions.shape[0] != dim or directions.shape[1] < 1:
        raise ValueError(
            f"directions must have shape ({dim}, S) with S >= 1, got {tuple(directions.shape)}"
        )
    norms = torch.linalg.vector_norm(directions.detach().double(), dim=0)
    if not torch.allclose(norms, torch.ones_like(norms), atol=_UNIT_TOLERANCE):
        raise ValueError(
            f"directions must have unit columns, got column norms in "
            f"[{norms.min().item():.4g}, {norms.max().item():.4g}]"
        )


@full_precision
def lejepa_terms(
    views: Tensor | Sequence[Tensor],
    n_global: int,
    directions: Tensor | None = None,
    knots: int = 17,
    t_max: float = 3.0,
    slices: int = 256,
    gather: bool = True,
) -> dict[str, Tensor]:
    """`invariance`: mean over views, samples and dimensions of (mean of the global views − view)²;
    `sigreg`: SIGReg averaged over the views, all views along the same directions."""
    z = views if isinstance(views, Tensor) else torch.stack(list(views))
    if z.ndim != 3:
        raise ValueError(f"views must have shape (V, N, D), got {tuple(z.shape)}")
    if not 1 <= n_global <= z.shape[0]:
        raise ValueError(f"n_global must lie in [1, {z.shape[0]}] (the views), got {n_global}")
    centre = z[:n_global].mean(dim=0)
    return {
        "invariance": (centre - z).square().mean(),
        "sigreg": sigreg(z, directions, knots, t_max, slices, gather),
    }


def lejepa(
    views: Tensor | Sequence[Tensor],
    n_global: int,
    lambd: float = 0.05,
    directions: Tensor | None = None,
    knots: int = 17,
    t_max: float = 3.0,
    slices: int = 256,
    gather: bool = True,
) -> Tensor:
    """(1 − λ)·invariance + λ·SIGReg (see :func:`lejepa_terms`); views are (V, N, D) or a list
    of V (N, D) tensors, the global views first."""
    _check_lambda(lambd)
    terms = lejepa_terms(views, n_global, directions, knots, t_max, slices, gather)
    return _weighted(terms, lambd)


def _weighted(terms: dict[str, Tensor], lambd: float) -> Tensor:
    return (1 - lambd) * terms["invariance"] + lambd * terms["sigreg"]


def _check_lambda(lambd: float) -> None:
    check_non_negative("lambd", lambd)
    if lambd > 1:
        raise ValueError(f"lambd must lie in [0, 1], got {lambd!r}")


class LeJEPALoss(nn.Module):
    """Module form of :func:`lejepa`. After `set_step(step)` the directions of a step are drawn
    from a generator seeded by `seed` and the step: fresh each step, the same on every rank
    without communication, and the same again when a resumed run replays the step."""

    def __init__(
        self,
        lambd: float = 0.05,
        knots: int = 17,
        t_max: float = 3.0,
        slices: int = 256,
        seed: int = 0,
        gather: bool = True,
    ):
        super().__init__()
        _check_lambda(lambd)
        check_positive("t_max", t_max)
        if knots < 2 or slices < 1:
            raise ValueError(f"knots must be >= 2 and slices >= 1, got {knots} and {slices}")
        self.lambd, self.knots, self.t_max, self.slices = lambd, knots, t_max, slices
        self.seed, self.gather = seed, gather
        self.step: int | None = None

    def set_step(self, step: int, total_steps: int) -> None:
        self.step = step

    def directions(self, dim: int, device: torch.device) -> Tensor | None:
        """This step's directions, or None (torch's global random state) before any set_step."""
        if self.step is None:
            return None
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        return draw_directions(dim, self.slices, generator, device)

    def forward_with_terms(
        self, views: Tensor | Sequence[Tensor], n_global: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss and its unweighted terms, for the log."""
        z = views if isinstance(views, Tensor) else torch.stack(list(views))
        directions = self.directions(z.shape[-1], z.device)
        terms = lejepa_terms(
            z, n_global, directions, self.knots, self.t_max, self.slices, self.gather
        )
        return _weighted(terms, self.lambd), {k: v.detach() for k, v in terms.items()}

    def forward(self, views: Tensor | Sequence[Tensor], n_global: int) -> Tensor:
        return self.forward_with_terms(views, n_global)[0]


__all__ = ["LeJEPALoss", "draw_directions", "lejepa", "lejepa_terms", "sigreg", "trapezoid_grid"]
