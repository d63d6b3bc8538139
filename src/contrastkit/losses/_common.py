"""Input checks and precision handling shared by every loss."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .row_logsumexp import check_chunk_size

P = ParamSpec("P")
R = TypeVar("R")

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def full_precision(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a loss in at least float32: upcast half-precision tensors and disable autocast.

    Similarity logits divided by small temperatures overflow or lose all resolution in
    fp16/bf16, so losses never compute in them, whatever the caller's autocast says.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        args = tuple(_upcast(a) for a in args)  # type: ignore[assignment]
        kwargs = {k: _upcast(v) for k, v in kwargs.items()}  # type: ignore[assignment]
        tensors = (a for a in (*args, *kwargs.values()) if isinstance(a, Tensor))
        # Entering autocast contexts costs ~30 µs a call, a third of a small loss: only when on.
        autocasting = {t.device.type for t in tensors if torch.is_autocast_enabled(t.device.type)}
        if not autocasting:
            return fn(*args, **kwargs)
        with _NoAutocast(autocasting):
            return fn(*args, **kwargs)

    return wrapper


def _upcast(x: object) -> object:
    if isinstance(x, Tensor) and x.dtype in _LOW_PRECISION:
        return x.float()
    return x


class _NoAutocast:
    """Disable autocast on every device type the inputs live on."""

    def __init__(self, device_types: set[str]) -> None:
        self._contexts = [
            torch.autocast(device_type=d, enabled=False) for d in sorted(device_types)
        ]

    def __enter__(self) -> None:
        for c in self._contexts:
            c.__enter__()

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self._contexts):
            c.__exit__(*exc)


def check_embeddings(z: Tensor, name: str = "z", min_batch: int = 2) -> None:
    """Require a 2-D floating tensor with at least `min_batch` rows."""
    if not isinstance(z, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, dim), got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    if z.shape[0] < min_batch:
        raise ValueError(
            f"{name} has batch size {z.shape[0]}; this loss needs at least {min_batch} samples"
        )


def check_pair(z1: Tensor, z2: Tensor, min_batch: int = 2, names: str = "z1,z2") -> None:
    """Require two embedding batches of the same shape."""
    n1, n2 = names.split(",")
    check_embeddings(z1, n1, min_batch)
    check_embeddings(z2, n2, min_batch)
    if z1.shape != z2.shape:
        raise ValueError(
            f"{n1} and {n2} must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )


def check_positive(name: str, value: float | Tensor) -> None:
    """Require a strictly positive hyperparameter (temperatures, kernel widths)."""
    v = float(value.detach()) if isinstance(value, Tensor) else float(value)
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_non_negative(name: str, value: float | Tensor) -> None:
    """Require a hyperparameter >= 0 (weights, penalties)."""
    v = float(value.detach()) if isinstance(value, Tensor) else float(value)
    if not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def normalize(z: Tensor) -> Tensor:
    """L2-normalise rows; zero rows stay zero instead of becoming NaN."""
    return F.normalize(z, dim=-1)


def index_mask(index: Tensor, cols: int) -> Tensor:
    """Boolean (len(index), cols) mask that is True at (i, index[i])."""
    mask = torch.zeros(index.shape[0], cols, dtype=torch.bool, device=index.device)
    mask[torch.arange(index.shape[0], device=index.device), index] = True
    return mask


def off_diagonal_square_sum(m: Tensor) -> Tensor:
    """Σ_{i≠j} m_ij² of a square matrix, exactly: the diagonal is zeroed in a copy rather than
    subtracted, which could leave a tiny negative sum by cancellation."""
    off = m.clone()
    off.diagonal().zero_()
    return off.square().sum()


class TemperatureLoss(nn.Module):
    """Base of the loss modules over temperature-scaled similarities: checks and keeps
    `temperature` (> 0), `gather` (negatives from every rank) and `chunk_size` (rows per
    chunk; None: dense)."""

    def __init__(self, temperature: float, gather: bool, chunk_size: int | None) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        check_chunk_size(chunk_size)
        self.temperature, self.gather, self.chunk_size = temperature, gather, chunk_size
