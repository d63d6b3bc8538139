"""Naive float64 references for DINO, SwAV, Sinkhorn-Knopp and the DINO centre, written from the
papers' formulas and the authors' code (facebookresearch/dino `DINOLoss`, facebookresearch/swav
`distributed_sinkhorn`), as Python loops over views, samples and prototypes on 0-d tensors, so
that nothing is shared with `contrastkit.losses` and autograd through the loops gives reference
gradients too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _softmax(row: list[Tensor], temperature: float) -> list[Tensor]:
    """softmax(row / temperature) of a list of scalars, with the maximum subtracted."""
    top = max(float(x.detach()) for x in row)
    exps = [torch.exp((x - top) / temperature) for x in row]
    total = sum(exps)
    return [e / total for e in exps]


def _cross_entropy(target: list[Tensor], logits: list[Tensor], temperature: float) -> Tensor:
    """−Σ_k target_k · log softmax(logits / temperature)_k."""
    top = max(float(x.detach()) for x in logits)
    log_total = torch.log(sum(torch.exp((x - top) / temperature) for x in logits))
    return -sum(
        t * ((x - top) / temperature - log_total) for t, x in zip(target, logits, strict=True)
    )


def _rows(view: Tensor) -> list[list[Tensor]]:
    view = view.double()
    return [[view[i, k] for k in range(view.shape[1])] for i in range(view.shape[0])]


def dino(
    student: list[Tensor],
    teacher: list[Tensor],
    center: Tensor,
    student_temp: float,
    teacher_temp: float,
) -> Tensor:
    """DINO's DINOLoss.forward: for each teacher view iq and student view v ≠ iq, the batch mean
    of the cross-entropy; the total divided by the number of pairs."""
    c = [center.double().reshape(-1)[k] for k in range(center.numel())]
    total, pairs = torch.zeros((), dtype=torch.float64), 0
    for iq, t_view in enumerate(teacher):
        targets = [
            _softmax([x - ck for x, ck in zip(row, c, strict=True)], teacher_temp)
            for row in _rows(t_view.detach())
        ]
        for v, s_view in enumerate(student):
            if v == iq:
                continue
            terms = [
                _cross_entropy(q, row, student_temp)
                for q, row in zip(targets, _rows(s_view), strict=True)
            ]
            total = total + sum(terms) / len(terms)
            pairs += 1
    return total / pairs


def swav(scores: list[Tensor], codes: list[Tensor], temperature: float) -> Tensor:
    """SwAV's main_swav.py: for each crop id g with codes q, the mean over the other views v of
    the batch mean of −Σ q · log softmax(p_v / τ); then the mean over the code views."""
    loss = torch.zeros((), dtype=torch.float64)
    for g, q_view in enumerate(codes):
        q_rows = _rows(q_view.detach())
        subloss = torch.zeros((), dtype=torch.float64)
        others = [v for v in range(len(scores)) if v != g]
        for v in others:
            terms = [
                _cross_entropy(q, row, temperature)
                for q, row in zip(q_rows, _rows(scores[v]), strict=True)
            ]
            subloss = subloss + sum(terms) / len(terms)
        loss = loss + subloss / len(others)
    return loss / len(codes)


def sinkhorn(scores: Tensor, epsilon: float, iterations: int) -> Tensor:
    """SwAV's distributed_sinkhorn on one process, element by element: Q = exp(scores/ε)ᵀ (K×B),
    Q /= ΣQ, then per iteration rows (prototypes) /= their sum·K, columns /= their sum·B;
    return (B·Q)ᵀ."""
    b, k = scores.shape
    q = [[math.exp(float(scores[i, j]) / epsilon) for i in range(b)] for j in range(k)]
    total = sum(sum(row) for row in q)
    q = [[x / total for x in row] for row in q]
    for _ in range(iterations):
        row_sums = [sum(row) for row in q]
        q = [[x / row_sums[j] / k for x in q[j]] for j in range(k)]
        col_sums = [sum(q[j][i] for j in range(k)) for i in range(b)]
        q = [[q[j][i] / col_sums[i] / b for i in range(b)] for j in range(k)]
    return torch.tensor([[q[j][i] * b for j in range(k)] for i in range(b)], dtype=torch.float64)


def dino_center(center: Tensor, teacher: list[Tensor], momentum: float) -> Tensor:
    """DINO's update_center: m·c + (1 − m)·(sum of all teacher rows / number of rows)."""
    rows = [row for view in teacher for row in _rows(view)]
    dim = center.numel()
    c = center.double().reshape(-1)
    means = [sum(row[k] for row in rows) / len(rows) for k in range(dim)]
    return torch.stack([momentum * c[k] + (1 - momentum) * means[k] for k in range(dim)])
