"""Modulated sigmoid loss: SigLIP pairs with a confidence penalty and a KL invariance term.

From the sigmoid-contrastive-learning seed (Basara, 2024), after SigLIP (Zhai et al., 2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._common import (
    check_non_negative,
    check_pair,
    check_positive,
    full_precision,
    normalize,
)
from .distributed import gather_rows, own_columns
from .row_logsumexp import block_rows, check_chunk_size


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
    filter_threshold: float | None = None,
) -> dict[str, Tensor]:
    """Unweighted terms: the modulated pairwise term (`pairwise`) and the KL invariance (`kl`,
    only when `with_kl`, since it costs two more softmaxes over the logits).

    pairwise = −(1/N) Σ_ij (1 − p_ij)^γ log σ(y_ij·logits_ij) with logits = scale·u·vᵀ + bias,
    y = 2I − 1, p = σ(y·logits); kl = (1/N) Σ_i KL(Q_i ‖ P_i), P = softmax(logits, dim=1),
    Q = softmax(logitsᵀ, dim=1). Rows are local anchors, columns span all ranks. Both are sums
    over rows and always run in blocks of rows (_PairwiseSum, _KLSum), in memory linear in the
    batch; `chunk_size=k` sets the block to k rows.

    `filter_threshold=c` is the seed's penalty filtering: pairwise = −(1/N) Σ_{ij kept}
    log σ(y_ij·logits_ij), unmodulated, over the positive pairs and the negative pairs whose
    modulation (1 − p_ij)^γ exceeds c.
    """
    check_pair(z1, z2)
    check_positive("scale", scale)
    check_non_negative("gamma", gamma)
    check_chunk_size(chunk_size)
    if filter_threshold is not None:
        check_non_negative("filter_threshold", filter_threshold)
    u, v = normalize(z1), normalize(z2)
    v_all = gather_rows(v, gather)
    own = own_columns(u.shape[0], u.device, gather)
    scale, bias = (torch.as_tensor(x, dtype=u.dtype, device=u.device) for x in (scale, bias))
    step = block_rows(u.shape[0], v_all.shape[0], chunk_size)
    terms = {
        "pairwise": _PairwiseSum.apply(
            u, v_all, own, scale, bias, float(gamma), step, filter_threshold
        )
    }
    if with_kl:
        terms["kl"] = _KLSum.apply(u, v, gather_rows(u, gather), v_all, scale, bias, step)
    return {name: total / u.shape[0] for name, total in terms.items()}


def _signed_logits(
    u: Tensor, v_all: Tensor, own: Tensor, scale: Tensor, bias: Tensor, out: Tensor
) -> Tensor:
    """t = y·(scale·u·vᵀ + bias) into `out`: the logits, negated except at each row's positive."""
    torch.mm(u, v_all.T, out=out).mul_(-scale).sub_(bias)
    return _negate_positives(out, own)


def _kept_pairs(t: Tensor, own: Tensor, gamma: float, threshold: float) -> Tensor:
    """Penalty filtering's mask: each row's positive, and the pairs with σ(−t)^γ > threshold."""
    kept = torch.exp(gamma * F.logsigmoid(-t)) > threshold
    return kept.scatter_(1, own[:, None], True)


def _negate_positives(m: Tensor, own: Tensor) -> Tensor:
    """Negate m[i, own[i]] in place, the one positive pair of each row."""
    index = own[:, None]
    return m.scatter_(1, index, -m.gather(1, index))


class _PairwiseSum(torch.autograd.Function):
    """Σ_ij f(t_ij) with f(t) = −σ(−t)^γ·log σ(t) and t the signed logits, blockwise.

    Autograd on the formula keeps about ten N×N temporaries (signs, log-sigmoids, modulation and
    their gradients). Here each block of rows is computed in one buffer and recomputed in the
    backward, where ∂f/∂t = −σ(−t)^γ·(σ(−t) − γ·σ(t)·log σ(t)) needs only the block itself; the
    scale's gradient Σ_ij E_ij·u_i·v_j is read off the product E·v already made for u's. With a
    `threshold` (penalty filtering) f(t) = −m·log σ(t), m the 0/1 mask of kept pairs, and
    ∂f/∂t = −m·σ(−t).
    """

    @staticmethod
    def forward(ctx, u, v_all, own, scale, bias, gamma: float, step: int, threshold):  # type: ignore[override]
        total = u.new_zeros(())
        buffer = u.new_empty(min(step, u.shape[0]), v_all.shape[0])
        for start in range(0, u.shape[0], step):
            stop = min(start + step, u.shape[0])
            t = _signed_logits(
                u[start:stop], v_all, own[start:stop], scale, bias, buffer[: stop - start]
            )
            log_p = F.logsigmoid(t)
            if threshold is not None:
                log_p.mul_(_kept_pairs(t, own[start:stop], gamma, threshold))
            elif gamma:
                log_p.mul_(torch.exp(gamma * F.logsigmoid(-t)))
            total -= log_p.sum()
        ctx.gamma, ctx.step, ctx.threshold = gamma, step, threshold
        ctx.save_for_backward(u, v_all, own, scale, bias)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        u, v_all, own, scale, bias = ctx.saved_tensors
        need_u, need_v, _, need_scale, need_bias = ctx.needs_input_grad[:5]
        grad_u = torch.empty_like(u) if need_u else None
        grad_v = torch.zeros_like(v_all) if need_v else None
        grad_scale, grad_bias = scale.new_zeros(()), bias.new_zeros(())
        buffer = u.new_empty(min(ctx.step, u.shape[0]), v_all.shape[0])
        for start in range(0, u.shape[0], ctx.step):
            stop = min(start + ctx.step, u.shape[0])
            rows = u[start:stop]
            t = _signed_logits(rows, v_all, own[start:stop], scale, bias, buffer[: stop - start])
            # E = ∂f/∂logits = −y·slope(t), the slope −∂f/∂t ≥ 0: +slope off the positive pairs.
            if ctx.threshold is None:
                slope = _slope(t, ctx.gamma)
            else:
                kept = _kept_pairs(t, own[start:stop], ctx.gamma, ctx.threshold)
                slope = _slope(t, 0.0).mul_(kept)
            e = _negate_positives(slope, own[start:stop])
            e_v = e @ v_all
            grad_scale += (e_v * rows).sum()
            grad_bias += e.sum()
            if need_u:
                grad_u[start:stop] = e_v * (grad * scale)
            if need_v:
                grad_v.addmm_(e.T, rows * (grad * scale))
        return (
            grad_u,
            grad_v,
            None,
            grad_scale * grad if need_scale else None,
            grad_bias * grad if need_bias else None,
            None,
            None,
            None,
        )


def _slope(t: Tensor, gamma: float) -> Tensor:
    """−∂f/∂t = σ(−t)^γ·(σ(−t) − γ·σ(t)·log σ(t)), in place on t where γ = 0."""
    if not gamma:
        return t.neg_().sigmoid_()
    log_q, log_p = F.logsigmoid(-t), F.logsigmoid(t)
    return torch.exp(gamma * log_q) * (torch.exp(log_q) - gamma * torch.exp(log_p) * log_p)


def _log_softmax_logits(
    a: Tensor, b_all: Tensor, scale: Tensor, bias: Tensor, out: Tensor
) -> Tensor:
    """log softmax over each row of scale·a·b_allᵀ + bias, computed in `out`."""
    logits = torch.mm(a, b_all.T, out=out).mul_(scale).add_(bias)
    return logits.sub_(torch.logsumexp(logits, dim=1, keepdim=True))


class _KLSum(torch.autograd.Function):
    """Σ_i KL(Q_i ‖ P_i), P = softmax of the rows of logits, Q of the rows of logitsᵀ (row i of
    logitsᵀ is scale·v_i·u_allᵀ + bias), blockwise and recomputed in the backward.

    ∂KL_i/∂logits_ij = p_ij − q_ij and ∂KL_i/∂logitsᵀ_ij = q_ij·(log q_ij − log p_ij − KL_i);
    both rows sum to zero, so the bias gets no gradient. Autograd on log_softmax and kl_div keeps
    six N×N temporaries; this keeps three blocks.
    """

    @staticmethod
    def forward(ctx, u, v, u_all, v_all, scale, bias, step: int):  # type: ignore[override]
        rows = u.shape[0]
        kl = u.new_empty(rows)
        log_p_buffer, log_q_buffer = (u.new_empty(min(step, rows), v_all.shape[0]) for _ in "pq")
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            log_p = _log_softmax_logits(
                u[start:stop], v_all, scale, bias, log_p_buffer[: stop - start]
            )
            log_q = _log_softmax_logits(
                v[start:stop], u_all, scale, bias, log_q_buffer[: stop - start]
            )
            gap = torch.sub(log_q, log_p, out=log_p)
            kl[start:stop] = torch.einsum("ij,ij->i", log_q.exp_(), gap)
        ctx.step = step
        ctx.save_for_backward(u, v, u_all, v_all, scale, bias, kl)
        return kl.sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        u, v, u_all, v_all, scale, bias, kl = ctx.saved_tensors
        grads = [torch.zeros_like(x) for x in (u, v, u_all, v_all)]
        grad_scale = scale.new_zeros(())
        rows = u.shape[0]
        log_p_buffer, log_q_buffer = (
            u.new_empty(min(ctx.step, rows), v_all.shape[0]) for _ in "pq"
        )
        weight = grad * scale
        for start in range(0, rows, ctx.step):
            stop = min(start + ctx.step, rows)
            u_rows, v_rows = u[start:stop], v[start:stop]
            log_p = _log_softmax_logits(u_rows, v_all, scale, bias, log_p_buffer[: stop - start])
            log_q = _log_softmax_logits(v_rows, u_all, scale, bias, log_q_buffer[: stop - start])
            grad_t = torch.sub(log_q, log_p).sub_(kl[start:stop, None])
            q = log_q.exp_()
            grad_s = log_p.exp_().sub_(q)  # p − q
            grad_t.mul_(q)  # q·(log q − log p − KL)
            for g, a, b, grad_a, grad_b_all in (
                (grad_s, u_rows, v_all, grads[0], grads[3]),
                (grad_t, v_rows, u_all, grads[1], grads[2]),
            ):
                g_b = g @ b
                grad_scale += (g_b * a).sum()
                grad_a[start:stop] = g_b * weight
                grad_b_all.addmm_(g.T, a * weight)
        need = ctx.needs_input_grad
        return (
            *(g if need[i] else None for i, g in enumerate(grads)),
            grad_scale * grad if need[4] else None,
            torch.zeros_like(bias) if need[5] else None,
            None,
        )


def sigmoid(
    z1: Tensor,
    z2: Tensor,
    scale: float | Tensor = 10.0,
    bias: float | Tensor = -10.0,
    gamma: float = 0.0,
    kl_weight: float = 0.0,
    gather: bool = True,
    chunk_size: int | None = None,
    filter_threshold: float | None = None,
) -> Tensor:
    """pairwise + kl_weight·kl (see :func:`sigmoid_terms`); γ=0, kl_weight=0 is SigLIP exactly."""
    check_non_negative("kl_weight", kl_weight)
    terms = sigmoid_terms(
        z1,
        z2,
        scale,
        bias,
        gamma,
        kl_weight > 0,
        gather=gather,
        chunk_size=chunk_size,
        filter_threshold=filter_threshold,
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
    −10 so the many negatives do not dominate the first steps. `max_scale` caps the scale
    (exp(log scale) clamped, the sigmoid seed's `max_tau` 5, through which no gradient flows
    while capped). With `gamma_decay_steps > 0`, `set_step` decays γ from `gamma` to 0 by a half
    cosine (`cosine_gamma`); `forward_with_terms` also returns the unweighted terms and the scale
    and bias, for the log.

    `penalty_filtering` is the seed's option: once `set_step` has reported a step past
    `filtering_warmup_steps`, the pairwise term keeps only the positives and the negatives whose
    modulation exceeds `filtering_threshold` (see :func:`sigmoid_terms`).
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
        max_scale: float | None = None,
        penalty_filtering: bool = False,
        filtering_threshold: float = 0.05,
        filtering_warmup_steps: int = 5000,
        gamma_decay_steps: int = 0,
    ):
        super().__init__()
        check_positive("init_scale", init_scale)
        if max_scale is not None:
            check_positive("max_scale", max_scale)
        check_non_negative("filtering_threshold", filtering_threshold)
        check_non_negative("filtering_warmup_steps", filtering_warmup_steps)
        check_non_negative("gamma_decay_steps", gamma_decay_steps)
        check_chunk_size(chunk_size)
        check_non_negative("gamma", gamma)
        check_non_negative("kl_weight", kl_weight)
        log_scale = torch.tensor(math.log(init_scale))
        bias = torch.tensor(float(init_bias))
        self.log_scale = nn.Parameter(log_scale, requires_grad=learnable)
        self.bias = nn.Parameter(bias, requires_grad=learnable)
        self.gamma, self.kl_weight, self.gather = gamma, kl_weight, gather
        self.chunk_size, self.max_scale = chunk_size, max_scale
        self.penalty_filtering, self.filtering_threshold = penalty_filtering, filtering_threshold
        self.filtering_warmup_steps = filtering_warmup_steps
        self.initial_gamma, self.gamma_decay_steps = gamma, gamma_decay_steps
        self.step = 0

    def set_step(self, step: int, total_steps: int) -> None:
        """The optimiser step about to run: γ's half-cosine decay over `gamma_decay_steps`, and
        penalty filtering's warm-up."""
        self.step = step
        self.gamma = cosine_gamma(step, self.initial_gamma, self.gamma_decay_steps)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return self.forward_with_terms(z1, z2)[0]

    def forward_with_terms(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        scale = self.log_scale.exp()
        if self.max_scale is not None:
            scale = scale.clamp(max=self.max_scale)
        filtering = self.penalty_filtering and self.step > self.filtering_warmup_steps
        terms = sigmoid_terms(
            z1,
            z2,
            scale,
            self.bias,
            self.gamma,
            with_kl=self.kl_weight > 0,
            gather=self.gather,
            chunk_size=self.chunk_size,
            filter_threshold=self.filtering_threshold if filtering else None,
        )
        logged = {k: v.detach() for k, v in terms.items()}
        logged.update(scale=scale.detach(), bias=self.bias.detach())
        return _weighted(terms, self.kl_weight), logged
