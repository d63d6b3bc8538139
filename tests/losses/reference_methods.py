"""Naive float64 references for the method losses (BYOL, MoCo v2/v3, NNCLR, SIGReg, LeJEPA).

Explicit loops over rows, candidates, directions and knots on 0-d tensors, sharing nothing with
`contrastkit.losses`; autograd through them gives reference gradients too. SIGReg integrates its
even integrand over the whole interval [−t_max, t_max] with the plain trapezoid rule, where the
library integrates [0, t_max] with doubled weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .reference_contrastive import unit_rows


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _cos(a: Tensor, b: Tensor) -> Tensor:
    return _dot(a, b) / torch.sqrt(_dot(a, a) * _dot(b, b))


def _mean(values: list[Tensor]) -> Tensor:
    return sum(values) / len(values)


def _cross_entropy(logits: list[Tensor], target: int) -> Tensor:
    return -torch.log(torch.exp(logits[target]) / sum(torch.exp(x) for x in logits))


def byol(p: Tensor, z: Tensor) -> Tensor:
    """Mean of 2 − 2·cos(p_i, sg(z_i))."""
    z = z.detach().double()
    return _mean([2 - 2 * _cos(a, b) for a, b in zip(p.double(), z, strict=True)])


def moco(q: Tensor, k: Tensor, queue: Tensor | None, temperature: float) -> Tensor:
    """Per row: −log(e^{u·v/τ} / (e^{u·v/τ} + Σ_queue e^{u·w/τ}))."""
    u, v = unit_rows(q), unit_rows(k)
    w = unit_rows(queue) if queue is not None else []
    losses = []
    for ui, vi in zip(u, v, strict=True):
        logits = [_dot(ui, vi) / temperature] + [_dot(ui, wj) / temperature for wj in w]
        losses.append(_cross_entropy(logits, 0))
    return _mean(losses)


def moco_v3(q: Tensor, k: Tensor, temperature: float) -> Tensor:
    """2τ·CE(u_i·v_j/τ over j, target i) with the keys under stop-gradient."""
    u, v = unit_rows(q), unit_rows(k.detach())
    losses = [_cross_entropy([_dot(ui, vj) / temperature for vj in v], i) for i, ui in enumerate(u)]
    return 2 * temperature * _mean(losses)


def nearest(z: Tensor, support: Tensor) -> list[int]:
    """Index of each row's most cosine-similar support row, by a loop."""
    out = []
    for row in z.detach().double():
        sims = [_cos(row, s).item() for s in support.detach().double()]
        out.append(max(range(len(sims)), key=sims.__getitem__))
    return out


def nnclr(z: Tensor, p: Tensor, support: Tensor, temperature: float) -> Tensor:
    """CE of NN(z_i)·p_j/τ over j with target i; the neighbour carries no gradient."""
    anchors = unit_rows(support.detach()[nearest(z, support)])
    v = unit_rows(p)
    losses = [
        _cross_entropy([_dot(a, vj) / temperature for vj in v], i) for i, a in enumerate(anchors)
    ]
    return _mean(losses)


def sigreg(z: Tensor, directions: Tensor, knots: int, t_max: float) -> Tensor:
    """Mean over leading views and directions of N·∫_{−T}^{T} |φ̂(t) − e^{−t²/2}|² e^{−t²/2} dt."""
    z = z.double()
    views = z.reshape(-1, *z.shape[-2:])
    n = views.shape[1]
    dt = t_max / (knots - 1)
    grid = [-t_max + i * dt for i in range(2 * knots - 1)]
    statistics = []
    for view in views:
        for s in range(directions.shape[1]):
            a = directions[:, s].double()
            x = [_dot(row, a) for row in view]
            integral = 0
            for i, t in enumerate(grid):
                re = sum(torch.cos(t * xi) for xi in x) / n
                im = sum(torch.sin(t * xi) for xi in x) / n
                gauss = math.exp(-t * t / 2)
                weight = dt / 2 if i in (0, len(grid) - 1) else dt
                integral = integral + weight * ((re - gauss) ** 2 + im**2) * gauss
            statistics.append(n * integral)
    return _mean(statistics)


def invariance(views: Tensor, n_global: int) -> Tensor:
    """Mean over views, samples and dimensions of (mean of the global views − view)²."""
    views = views.double()
    v, n, d = views.shape
    total = 0
    for i in range(v):
        for r in range(n):
            for c in range(d):
                centre = sum(views[g, r, c] for g in range(n_global)) / n_global
                total = total + (centre - views[i, r, c]) ** 2
    return total / (v * n * d)


def lejepa(views: Tensor, n_global: int, lambd: float, directions: Tensor, knots: int) -> Tensor:
    """(1 − λ)·invariance + λ·SIGReg (t_max 3)."""
    return (1 - lambd) * invariance(views, n_global) + lambd * sigreg(views, directions, knots, 3.0)
