"""Naive float64 references for the non-contrastive losses, written from the spec's formulas.

VICReg, Barlow Twins, SimSiam, SupCon, the sigmoid loss, alignment and uniformity, each as
explicit Python loops over samples, anchors or dimension pairs on 0-d tensors, so nothing is
shared with the vectorised code in `contrastkit.losses` and autograd through the loops gives
reference gradients too. Dot products of two rows are the only vector operations.
"""

from __future__ import annotations

import torch
from torch import Tensor

VICREG_STD_EPS = 1e-4
BARLOW_EPS = 1e-5


def _unit(row: Tensor) -> Tensor:
    """A row divided by its Euclidean length."""
    return row / torch.sqrt(torch.dot(row, row))


def _unit_rows(z: Tensor) -> list[Tensor]:
    """Every row of `z` in float64, L2-normalised."""
    return [_unit(row) for row in z.double()]


def _mean(values: list[Tensor]) -> Tensor:
    return sum(values) / len(values)


def _columns(z: Tensor) -> list[list[Tensor]]:
    """`z` in float64 as a list of columns, each a list of scalars."""
    z = z.double()
    return [[z[i, k] for i in range(z.shape[0])] for k in range(z.shape[1])]


def _relu(x: Tensor) -> Tensor:
    return torch.clamp(x, min=0.0)


def _centred(column: list[Tensor]) -> list[Tensor]:
    mean = _mean(column)
    return [x - mean for x in column]


def vicreg_terms(z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
    """Official VICReg normalisation: invariance = MSE mean; variance = mean_d relu(1 − std_d)
    halved per branch with std = sqrt(unbiased var + 1e-4); covariance = Σ_{a≠b} cov_ab² / D
    per branch, cov = xᵀx/(N−1) of the centred batch, summed over branches."""
    n, d = z1.shape
    a, b = z1.double(), z2.double()
    invariance = sum((a[i, k] - b[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)

    def variance(z: Tensor) -> Tensor:
        terms = []
        for column in _columns(z):
            var = sum(x**2 for x in _centred(column)) / (n - 1)
            terms.append(_relu(1 - torch.sqrt(var + VICREG_STD_EPS)))
        return _mean(terms)

    def covariance(z: Tensor) -> Tensor:
        centred = [_centred(column) for column in _columns(z)]
        total = torch.zeros((), dtype=torch.float64)
        for p in range(d):
            for q in range(d):
                if p != q:
                    cov = sum(centred[p][i] * centred[q][i] for i in range(n)) / (n - 1)
                    total = total + cov**2
        return total / d

    return {
        "invariance": invariance,
        "variance": variance(z1) / 2 + variance(z2) / 2,
        "covariance": covariance(z1) + covariance(z2),
    }


def vicreg(
    z1: Tensor, z2: Tensor, sim_weight: float, var_weight: float, cov_weight: float
) -> Tensor:
    """sim·invariance + var·variance + cov·covariance."""
    t = vicreg_terms(z1, z2)
    return sim_weight * t["invariance"] + var_weight * t["variance"] + cov_weight * t["covariance"]


def _standardised_columns(z: Tensor) -> list[list[Tensor]]:
    """Each column minus its batch mean over sqrt(biased variance + 1e-5)."""
    result = []
    for column in _columns(z):
        centred = _centred(column)
        std = torch.sqrt(sum(x**2 for x in centred) / len(centred) + BARLOW_EPS)
        result.append([x / std for x in centred])
    return result


def barlow_twins_terms(z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
    """C_pq = Σ_i a_ip b_iq / N of the standardised views; Σ(1 − C_pp)² and Σ_{p≠q} C_pq²."""
    n, d = z1.shape
    a, b = _standardised_columns(z1), _standardised_columns(z2)
    on = torch.zeros((), dtype=torch.float64)
    off = torch.zeros((), dtype=torch.float64)
    for p in range(d):
        for q in range(d):
            c = sum(a[p][i] * b[q][i] for i in range(n)) / n
            if p == q:
                on = on + (1 - c) ** 2
            else:
                off = off + c**2
    return {"on_diagonal": on, "off_diagonal": off}


def barlow_twins(z1: Tensor, z2: Tensor, lambd: float) -> Tensor:
    """Σ(1 − C_pp)² + λ Σ_{p≠q} C_pq²."""
    t = barlow_twins_terms(z1, z2)
    return t["on_diagonal"] + lambd * t["off_diagonal"]


def simsiam(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """mean_i ½[−cos(p1_i, sg(z2_i)) − cos(p2_i, sg(z1_i))]."""
    terms = []
    for a, b, c, e in zip(p1.double(), p2.double(), z1.double(), z2.double(), strict=True):
        cos_12 = torch.dot(_unit(a), _unit(e.detach()))
        cos_21 = torch.dot(_unit(b), _unit(c.detach()))
        terms.append(-(cos_12 + cos_21) / 2)
    return _mean(terms)


def supcon(z: Tensor, labels: Tensor | None, temperature: float) -> Tensor:
    """The paper's L_out over all N·V anchors, mean over anchors with at least one positive.

    P(i) = every other embedding with the same label (the same sample when `labels` is None),
    A(i) = every other embedding; term_i = −1/|P(i)| Σ_p log(exp(z_i·z_p/τ) / Σ_a exp(z_i·z_a/τ)).
    """
    n, views = z.shape[0], z.shape[1]
    ids = list(range(n)) if labels is None else [int(x) for x in labels]
    embeddings = [(_unit(z[i, k].double()), ids[i]) for i in range(n) for k in range(views)]
    terms = []
    for i, (anchor, anchor_id) in enumerate(embeddings):
        others = [e for j, e in enumerate(embeddings) if j != i]
        positives = [e for e, e_id in others if e_id == anchor_id]
        if not positives:
            continue
        denominator = sum(torch.exp(torch.dot(anchor, a) / temperature) for a, _ in others)
        log_probs = [
            torch.log(torch.exp(torch.dot(anchor, p) / temperature) / denominator)
            for p in positives
        ]
        terms.append(-sum(log_probs) / len(positives))
    return _mean(terms)


def _sigmoid(x: Tensor) -> Tensor:
    return 1 / (1 + torch.exp(-x))


def _softmax(values: list[Tensor]) -> list[Tensor]:
    total = sum(torch.exp(x) for x in values)
    return [torch.exp(x) / total for x in values]


def sigmoid_terms(
    z1: Tensor, z2: Tensor, scale: float | Tensor, bias: float | Tensor, gamma: float
) -> dict[str, Tensor]:
    """Double loop over pairs: logits_ij = scale·u_i·v_j + bias, y_ij = +1 iff i = j,
    p_ij = σ(y_ij·logits_ij); pairwise = −(1/N) Σ_ij (1 − p_ij)^γ log p_ij and
    kl = (1/N) Σ_i KL(Q_i ‖ P_i), P_i = softmax_j(logits_ij), Q_i = softmax_j(logits_ji)."""
    u, v = _unit_rows(z1), _unit_rows(z2)
    n = len(u)
    logits = [[scale * torch.dot(u[i], v[j]) + bias for j in range(n)] for i in range(n)]
    pairwise = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            y = 1.0 if i == j else -1.0
            p = _sigmoid(y * logits[i][j])
            pairwise = pairwise - (1 - p) ** gamma * torch.log(p)
    kl = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        p_row = _softmax(logits[i])
        q_row = _softmax([logits[j][i] for j in range(n)])
        kl = kl + sum(q * torch.log(q / p) for q, p in zip(q_row, p_row, strict=True))
    return {"pairwise": pairwise / n, "kl": kl / n}


def sigmoid(
    z1: Tensor,
    z2: Tensor,
    scale: float | Tensor,
    bias: float | Tensor,
    gamma: float,
    kl_weight: float,
) -> Tensor:
    """pairwise + kl_weight·kl."""
    t = sigmoid_terms(z1, z2, scale, bias, gamma)
    return t["pairwise"] + kl_weight * t["kl"]


def _distance(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distance, from the coordinate differences."""
    diff = a - b
    return torch.sqrt(torch.dot(diff, diff))


def alignment(z1: Tensor, z2: Tensor, alpha: float) -> Tensor:
    """mean_i ‖u_i − v_i‖^α."""
    u, v = _unit_rows(z1), _unit_rows(z2)
    return _mean([_distance(a, b) ** alpha for a, b in zip(u, v, strict=True)])


def uniformity(z: Tensor, t: float) -> Tensor:
    """log((1/(N(N−1))) Σ_{i≠j} exp(−t‖u_i − u_j‖²))."""
    u = _unit_rows(z)
    kernels = [
        torch.exp(-t * _distance(u[i], u[j]) ** 2)
        for i in range(len(u))
        for j in range(len(u))
        if i != j
    ]
    return torch.log(_mean(kernels))
