"""Naive float64 references for the contrastive losses, written from the spec's formulas.

Every loss is an explicit Python loop over anchors, each building its list of candidate
similarities one scalar at a time, so nothing is shared with the vectorised, masked code in
`contrastkit.losses`. The loops run on 0-d tensors, so autograd through them gives reference
gradients too.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor


def unit_rows(z: Tensor) -> list[Tensor]:
    """Each row of `z` in float64 divided by its Euclidean length (the losses' normalisation)."""
    return [row / torch.sqrt(torch.dot(row, row)) for row in z.double()]


def _mean(values: list[Tensor]) -> Tensor:
    """Arithmetic mean of scalar tensors."""
    return sum(values) / len(values)


def _neg_log_softmax(positive: Tensor, candidates: list[Tensor]) -> Tensor:
    """−log(exp(positive) / Σ exp(candidates)); `candidates` must contain the positive if wanted."""
    return -torch.log(torch.exp(positive) / sum(torch.exp(c) for c in candidates))


def _log_sum_exp(values: list[Tensor]) -> Tensor:
    """log Σ exp(values), unstabilised: float64 holds every logit these tests produce."""
    return torch.log(sum(torch.exp(x) for x in values))


def info_nce(z1: Tensor, z2: Tensor, temperature: float, symmetric: bool) -> Tensor:
    """Cross-entropy of u_i·v_j/τ over j with target i; `symmetric` averages in v→u."""

    def one_direction(a: list[Tensor], b: list[Tensor]) -> Tensor:
        losses = []
        for i in range(len(a)):
            logits = [torch.dot(a[i], b[j]) / temperature for j in range(len(b))]
            losses.append(_neg_log_softmax(logits[i], logits))
        return _mean(losses)

    u, v = unit_rows(z1), unit_rows(z2)
    if symmetric:
        return (one_direction(u, v) + one_direction(v, u)) / 2
    return one_direction(u, v)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR: each of the 2N embeddings against the 2N−1 others, its other view the positive."""
    embeddings = unit_rows(z1) + unit_rows(z2)
    n2 = len(embeddings)
    losses = []
    for k in range(n2):
        partner = (k + n2 // 2) % n2
        candidates = [
            torch.dot(embeddings[k], embeddings[j]) / temperature for j in range(n2) if j != k
        ]
        positive = torch.dot(embeddings[k], embeddings[partner]) / temperature
        losses.append(_neg_log_softmax(positive, candidates))
    return _mean(losses)


def _dcl_one_sided(
    u: list[Tensor], v: list[Tensor], temperature: float, weights: list[float] | list[Tensor]
) -> Tensor:
    """mean_i[−w_i·u_i·v_i/τ + log Σ_{j≠i}(exp(u_i·v_j/τ) + exp(u_i·u_j/τ))]."""
    losses = []
    for i in range(len(u)):
        negatives = [torch.dot(u[i], v[j]) / temperature for j in range(len(v)) if j != i]
        negatives += [torch.dot(u[i], u[j]) / temperature for j in range(len(u)) if j != i]
        positive = torch.dot(u[i], v[i]) / temperature
        losses.append(-weights[i] * positive + _log_sum_exp(negatives))
    return _mean(losses)


def dcl(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """One-sided DCL with anchors from z1."""
    u, v = unit_rows(z1), unit_rows(z2)
    return _dcl_one_sided(u, v, temperature, [1.0] * len(u))


def dcl_symmetric(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """DCL over all 2N anchors: the mean of the z1-anchored and z2-anchored losses."""
    u, v = unit_rows(z1), unit_rows(z2)
    ones = [1.0] * len(u)
    return (_dcl_one_sided(u, v, temperature, ones) + _dcl_one_sided(v, u, temperature, ones)) / 2


def dclw(
    z1: Tensor, z2: Tensor, temperature: float, sigma: float, weights_grad: bool = False
) -> Tensor:
    """Symmetric DCL with positives weighted by w_i = 2 − N·exp(s_i/σ)/Σ_j exp(s_j/σ).

    The spec computes the weights without gradient; `weights_grad=True` lets gradient flow
    through them, so tests can show the two differ.
    """
    u, v = unit_rows(z1), unit_rows(z2)
    n = len(u)
    with contextlib.nullcontext() if weights_grad else torch.no_grad():
        scores = [torch.exp(torch.dot(u[i], v[i]) / sigma) for i in range(n)]
        total = sum(scores)
        weights = [2 - n * scores[i] / total for i in range(n)]
    return (
        _dcl_one_sided(u, v, temperature, weights) + _dcl_one_sided(v, u, temperature, weights)
    ) / 2


def dhel(z1: Tensor, z2: Tensor, temperature: float, both_views: bool) -> Tensor:
    """mean_i[−u_i·v_i/τ + log Σ_{j≠i} exp(u_i·u_j/τ)], plus the same over v if `both_views`."""
    u, v = unit_rows(z1), unit_rows(z2)
    n = len(u)
    losses = []
    for i in range(n):
        loss = -torch.dot(u[i], v[i]) / temperature
        loss = loss + _log_sum_exp(
            [torch.dot(u[i], u[j]) / temperature for j in range(n) if j != i]
        )
        if both_views:
            loss = loss + _log_sum_exp(
                [torch.dot(v[i], v[j]) / temperature for j in range(n) if j != i]
            )
        losses.append(loss)
    return _mean(losses)


def kcl(z1: Tensor, z2: Tensor, t: float, gamma: float) -> Tensor:
    """−mean_i K(u_i, v_i) + γ·½[E(u) + E(v)], K(a, b) = exp(−t‖a − b‖²), E over ordered i≠j."""

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        diff = a - b
        return torch.exp(-t * torch.dot(diff, diff))

    def energy(x: list[Tensor]) -> Tensor:
        return _mean([kernel(x[i], x[j]) for i in range(len(x)) for j in range(len(x)) if j != i])

    u, v = unit_rows(z1), unit_rows(z2)
    alignment = _mean([kernel(u[i], v[i]) for i in range(len(u))])
    return -alignment + gamma * (energy(u) + energy(v)) / 2
