"""Top-1 and top-5 accuracy of class scores: the figures every protocol reports."""

from __future__ import annotations

from torch import Tensor

from ..train.probe import topk_correct


def topk_accuracy(scores: Tensor, labels: Tensor) -> dict[str, float]:
    """`top1` and `top5` as fractions of samples (top-5 is 1 with at most 5 classes)."""
    n = max(1, labels.shape[0])
    return {f"top{k}": topk_correct(scores, labels, k).item() / n for k in (1, 5)}
