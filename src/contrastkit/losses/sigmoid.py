"""Modulated sigmoid loss: SigLIP pairs with a confidence penalty and a KL invariance term.

From the sigmoid-contrastive-learning seed (Basara, 2024), after SigLIP (Zhai et al., 2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    check_non_negative,
    check_pair,
    check_positive,
    full_precision,
    index_mask,
    normalize,
    own_columns,
)
from .distributed import gather_rows, row_offset
from .row_logsumexp import blockwise_sum, check_chunk_size


@full_precision
def sigmoid_terms(
    z1: Tensor,
    z2: Tensor,
    scale: float | Tensor,
    bias: float | Tensor,
    gamma: float = 0.0,
    with_kl: bool = True,
    gather: bool = True,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """Unweighted terms: the modulated pairwise term (`pairwise`) and the KL invariance (`kl`,
    only when `with_kl`, since it costs two more softmaxes over the logits).

    pairwise = −(1/N) Σ_ij (1 − p_ij)^γ log σ(y_ij·logits_ij) with logits = scale·u·vᵀ + bias,
    y = 2I − 1, p = σ(y·logits); kl = (1/N) Σ_i KL(Q_i ‖ P_i), P = softmax(logits, dim=1),
    Q = softmax(logitsᵀ, dim=1). Rows are local anchors, columns span all ranks. Both are sums
    over rows, so `chunk_size=k` computes them k rows at a time, in memory linear in the batch.
    """
    check_pair(z1, z2)
    check_positive("scale", scale)
    check_non_negative("gamma", gamma)
    u, v = normalize(z1), normalize(z2)
    u_all, v_all = gather_rows(u, gather), gather_rows(v, gather)
    own = own_columns(u.shape[0], row_offset(u.shape[0], gather), u.device)
    sums = blockwise_sum(
        _row_block_sums, (u, v, own), (u_all, v_all, scale, bias, gamma, with_kl), chunk_size
    )
    terms = dict(zip(("pairwise", "kl"), sums, strict=False))
    return {name: total / u.shape[0] for name, total in terms.items()}


def _row_block_sums(
    u: Tensor,
    v: Tensor,
    own: Tensor,
    u_all: Tensor,
    v_all: Tensor,
    scale: float | Tensor,
    bias: float | Tensor,
    gamma: float,
    with_kl: bool,
) -> tuple[Tensor, ...]:
    """The pairwise (and KL) sums over the anchors u of one block of rows."""
    logits = scale * (u @ v_all.T) + bias
    signed = torch.where(index_mask(own, v_all.shape[0]), logits, -logits)
    log_p = F.logsigmoid(signed)
    # (1 − p)^γ = σ(−y·logits)^γ, computed in log space so its gradient stays finite at p → 1.
    modulation = torch.exp(gamma * F.logsigmoid(-signed)) if gamma else 1.0
    pairwise = -(modulation * log_p).sum()
    if not with_kl:
        return (pairwise,)
    # Row i of logitsᵀ is column i of logits: scale·v_i·u_jᵀ + bias over all j (all ranks).
    log_p_rows = F.log_softmax(logits, dim=1)
    log_q_rows = F.log_softmax(scale * (v @ u_all.T) + bias, dim=1)
    return pairwise, F.kl_div(log_p_rows, log_q_rows, reduction="sum", log_target=True)


def sigmoid(
    z1: Tensor,
    z2: Tensor,
    scale: float | Tensor = 10.0,
    bias: float | Tensor = -10.0,
    gamma: float = 0.0,
    kl_weight: float = 0.0,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """pairwise + kl_weight·kl (see :func:`sigmoid_terms`); γ=0, kl_weight=0 is SigLIP exactly."""
    check_non_negative("kl_weight", kl_weight)
    terms = sigmoid_terms(
        z1, z2, scale, bias, gamma, kl_weight > 0, gather=gather, chunk_size=chunk_size
    )
    return _weighted(terms, kl_weight)


def _weighted(terms: dict[str, Tensor], kl_weight: float) -> Tensor:
    return terms["pairwise"] + kl_weight * terms["kl"] if "kl" in terms else terms["pairwise"]


def cosine_gamma(step: int, initial: float, decay_steps: int) -> float:
    """Confidence penalty decayed from `initial` to 0 over `decay_steps` steps by a half cosine.

    `decay_steps <= 0` means no schedule: γ stays at `initial`.
    """
    if decay_steps <= 0:
        return initial
    if step >= decay_steps:
        return 0.0
    return initial * 0.5 * (1 + math.cos(math.pi * step / decay_steps))


class SigmoidLoss(nn.Module):
    """Sigmoid loss with learnable temperature and bias, SigLIP's initialisation.

    The scale is stored as its logarithm (init log 10) so it stays positive; the bias starts at
    −10 so the many negatives do not dominate the first steps. `gamma` may be changed between
    calls (a schedule); `components` holds the last call's unweighted terms and the scale/bias.
    """

    def __init__(
        self,
        init_scale: float = 10.0,
        init_bias: float = -10.0,
        gamma: float = 0.0,
        kl_weight: float = 0.0,
        learnable: bool = True,
        gather: bool = True,
        chunk_size: int | None = None,
    ):
        super().__init__()
        check_positive("init_scale", init_scale)
        check_chunk_size(chunk_size)
        check_non_negative("gamma", gamma)
        check_non_negative("kl_weight", kl_weight)
        log_scale = torch.tensor(math.log(init_scale))
        bias = torch.tensor(float(init_bias))
        self.log_scale = nn.Parameter(log_scale, requires_grad=learnable)
        self.bias = nn.Parameter(bias, requires_grad=learnable)
        self.gamma, self.kl_weight, self.gather = gamma, kl_weight, gather
        self.chunk_size = chunk_size
        self.components: dict[str, Tensor] = {}

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        scale = self.log_scale.exp()
        terms = sigmoid_terms(
            z1,
            z2,
            scale,
            self.bias,
            self.gamma,
            with_kl=self.kl_weight > 0,
            gather=self.gather,
            chunk_size=self.chunk_size,
        )
        self.components = {k: v.detach() for k, v in terms.items()}
        self.components.update(scale=scale.detach(), bias=self.bias.detach())
        return _weighted(terms, self.kl_weight)
