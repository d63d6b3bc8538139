"""DINO (Caron et al., 2021): cross-entropy from the centred, sharpened teacher distribution of
each global view to the student's distribution of every other view, with the centre and the
teacher-temperature schedule as plain functions.

Views are lists of (B, K) head outputs, one tensor per view. The teacher sees the global views
only; the student sees the same global views first, in the same order, then the local views.
Pairs are (teacher view t, student view s) with s ≠ t: with G global and L local views there
are G·(G + L − 1) of them, and the loss is their mean, each pair a mean over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._common import check_embeddings, check_positive, full_precision
from .distributed import is_gathering, sum_over_ranks, world_size


def stack_views(views: Sequence[Tensor], name: str) -> Tensor:
    """Views (each (B, K)) as one (V, B, K) tensor in at least float32; checks their shapes."""
    if isinstance(views, Tensor) or not views:
        raise ValueError(f"{name} must be a non-empty list of (batch, dim) tensors, one per view")
    for index, view in enumerate(views):
        check_embeddings(view, f"{name}[{index}]", min_batch=1)
        if view.shape != views[0].shape:
            raise ValueError(
                f"{name}[{index}] has shape {tuple(view.shape)}, "
                f"{name}[0] has {tuple(views[0].shape)}; every view must have the same shape"
            )
    stacked = torch.stack(list(views))
    return stacked if stacked.dtype in (torch.float32, torch.float64) else stacked.float()


def cross_view_mean(targets: Tensor, log_probs: Tensor) -> Tensor:
    """Mean over pairs (t, s), s ≠ t, of −Σ_k targets[t] · log_probs[s], each a batch mean.

    `targets` is (T, B, K) and `log_probs` (S, B, K) with T ≤ S: target view t is also view t
    of `log_probs`.
    """
    # Per target view, the cross-entropy of every row against every view, then batch means: a
    # sum over K, then a mean over B. One (T, B·K) @ (B·K, S) product would sum B·K terms at once
    # and lose 1e-4 of the loss to rounding in float32 at B = 4096, K = 128.
    cross = -torch.stack([(log_probs * target).sum(dim=-1).mean(dim=-1) for target in targets])
    same = torch.eye(*cross.shape, dtype=torch.bool, device=cross.device)
    pairs = cross.numel() - targets.shape[0]
    if pairs < 1:
        raise ValueError("one view alone forms no pair; give at least two views")
    return cross.masked_fill(same, 0).sum() / pairs


@full_precision
def dino(
    student_out: Sequence[Tensor],
    teacher_out: Sequence[Tensor],
    center: Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    gather: bool = True,
) -> Tensor:
    """mean over pairs (t, s≠t) of H(softmax((teacher_t − center)/τ_t), softmax(student_s/τ_s)).

    `student_out`: V_s views (B, K), global views first; `teacher_out`: the V_t ≤ V_s global
    views (B, K), no gradient flows into them; `center` (K,). The loss is a mean of per-sample
    terms, so the mean over ranks is already the loss of the global batch: `gather` is
    accepted for a uniform signature and needs no exchange (the centre's update gathers).
    """
    del gather
    check_positive("student_temp", student_temp)
    check_positive("teacher_temp", teacher_temp)
    student = stack_views(student_out, "student_out")
    teacher = stack_views(teacher_out, "teacher_out").detach()
    _check_teacher(student, teacher)
    _check_center(center, teacher.shape[-1])
    dtype = torch.promote_types(student.dtype, teacher.dtype)
    targets = torch.softmax((teacher.to(dtype) - center.detach().to(dtype)) / teacher_temp, -1)
    log_probs = torch.log_softmax(student.to(dtype) / student_temp, dim=-1)
    return cross_view_mean(targets, log_probs)


def _check_teacher(student: Tensor, teacher: Tensor) -> None:
    if teacher.shape[1:] != student.shape[1:] or teacher.shape[0] > student.shape[0]:
        raise ValueError(
            f"teacher_out ({teacher.shape[0]} views of {tuple(teacher.shape[1:])}) must be the "
            f"first views of student_out ({student.shape[0]} of {tuple(student.shape[1:])})"
        )


def _check_center(center: Tensor, dim: int) -> None:
    if not isinstance(center, Tensor) or center.shape not in ((dim,), (1, dim)):
        shape = tuple(center.shape) if isinstance(center, Tensor) else type(center).__name__
        raise ValueError(f"center must have shape ({dim},) or (1, {dim}), got {shape}")


@torch.no_grad()
def dino_center(
    center: Tensor, teacher_out: Sequence[Tensor], momentum: float = 0.9, gather: bool = True
) -> Tensor:
    """The next centre: momentum·center + (1 − momentum)·(mean teacher output of the global
    batch), the mean over every row of every view on every rank. Returned in center's dtype."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    teacher = stack_views(teacher_out, "teacher_out")
    _check_center(center, teacher.shape[-1])
    dtype = torch.promote_types(teacher.dtype, center.dtype)
    total = sum_over_ranks(teacher.to(dtype).sum(dim=(0, 1)), gather)
    rows = teacher.shape[0] * teacher.shape[1] * (world_size() if is_gathering(gather) else 1)
    mean = (total / rows).reshape(center.shape)
    return (momentum * center.to(dtype) + (1 - momentum) * mean).to(center.dtype)


def teacher_temperature(
    step: int, warmup_steps: int, start: float = 0.04, end: float = 0.07
) -> float:
    """The teacher temperature at `step` (counted from 0): DINO's linear warm-up from `start`
    over `warmup_steps` values (np.linspace(start, end, warmup_steps)), then `end`."""
    if step < 0 or warmup_steps < 0:
        raise ValueError(f"step and warmup_steps must be >= 0, got {step} and {warmup_steps}")
    check_positive("start", start)
    check_positive("end", end)
    if step >= warmup_steps:
        return end
    if warmup_steps == 1:
        return start
    return start + (end - start) * step / (warmup_steps - 1)


class DINOLoss(nn.Module):
    """Module form of :func:`dino`; `teacher_temp` in a call overrides the default (schedules)."""

    def __init__(self, student_temp: float = 0.1, teacher_temp: float = 0.04, gather: bool = True):
        super().__init__()
        check_positive("student_temp", student_temp)
        check_positive("teacher_temp", teacher_temp)
        self.student_temp, self.teacher_temp, self.gather = student_temp, teacher_temp, gather

    def forward(
        self,
        student_out: Sequence[Tensor],
        teacher_out: Sequence[Tensor],
        center: Tensor,
        teacher_temp: float | None = None,
    ) -> Tensor:
        temp = self.teacher_temp if teacher_temp is None else teacher_temp
        return dino(student_out, teacher_out, center, self.student_temp, temp, self.gather)
