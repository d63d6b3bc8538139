"""Naive float64 references for the loss options the seeds use, written from the seeds' code.

Explicit loops over anchors and pairs on 0-d tensors, sharing nothing with the vectorised code
in `contrastkit.losses`; autograd through them gives reference gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _unit(row: Tensor) -> Tensor:
    row = row.double()
    return row / torch.sqrt(torch.dot(row, row))


def _log_sigmoid(x: Tensor) -> Tensor:
    return -torch.log(1 + torch.exp(-x))


def supcontrast_loss(z: Tensor, labels: Tensor, temperature: float, base: float) -> Tensor:
    """HobbitLong/SupContrast's SupConLoss (contrast_mode 'all'): for each anchor, the mean over
    its positives of log(exp(s_p) / Σ_{a≠i} exp(s_a)), times −τ/base_temperature, averaged."""
    n, views = z.shape[0], z.shape[1]
    rows = [(_unit(z[i, k]), int(labels[i])) for k in range(views) for i in range(n)]
    terms = []
    for i, (anchor, label) in enumerate(rows):
        logits = [torch.dot(anchor, other) / temperature for other, _ in rows]
        denominator = sum(torch.exp(logits[a]) for a in range(len(rows)) if a != i)
        positives = [p for p, (_, other) in enumerate(rows) if p != i and other == label]
        mean_log_prob = sum(torch.log(torch.exp(logits[p]) / denominator) for p in positives)
        terms.append(-(temperature / base) * mean_log_prob / len(positives))
    return sum(terms) / len(terms)


def filtered_sigmoid_pairwise(
    z1: Tensor,
    z2: Tensor,
    scale: Tensor | float,
    bias: Tensor | float,
    gamma: float,
    threshold: float,
) -> Tensor:
    """Seed 004's scl_loss with penalty_filtering past its warm-up: −Σ log σ(y·logits) / n over
    the positive pairs and the negatives whose (1 − σ(y·logits))^γ exceeds the threshold."""
    u, v = [_unit(r) for r in z1], [_unit(r) for r in z2]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(len(u)):
        for j in range(len(v)):
            y = 1.0 if i == j else -1.0
            logit = scale * torch.dot(u[i], v[j]) + bias
            penalty = (1 - 1 / (1 + torch.exp(-y * logit))) ** gamma
            if i == j or float(penalty.detach()) > threshold:
                total = total - _log_sigmoid(y * logit)
    return total / len(u)


def nt_xent_multicrop(z: Tensor, temperature: float, labels: Tensor | None = None) -> Tensor:
    """solo-learn's manual_info_nce_sava over all crops (seed 002): for each crop and each other
    crop of its image (with `labels`: of its label), −log(exp(s_p) / (exp(s_p) + Σ_negatives
    exp(s_n))), negatives being the crops of other images (labels); mean over the positives of
    each crop, then over crops."""
    n, views = z.shape[0], z.shape[1]
    ids = list(range(n)) if labels is None else [int(x) for x in labels]
    crops = [(_unit(z[i, k]), ids[i]) for k in range(views) for i in range(n)]
    terms = []
    for a, (anchor, image) in enumerate(crops):
        logits = [torch.dot(anchor, other) / temperature for other, _ in crops]
        negatives = sum(
            torch.exp(logits[b]) for b, (_, other) in enumerate(crops) if other != image
        )
        positives = [b for b, (_, other) in enumerate(crops) if b != a and other == image]
        log_probs = [
            torch.log(torch.exp(logits[p]) / (torch.exp(logits[p]) + negatives)) for p in positives
        ]
        terms.append(-sum(log_probs) / len(positives))
    return sum(terms) / len(terms)
