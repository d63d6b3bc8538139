"""BYOL (Grill et al., 2020): each online prediction against the target's projection, by cosine."""

from __future__ import annotations

from torch import Tensor, nn

from ._common import check_pair, full_precision
from .simsiam import _CosineToTarget


@full_precision
def byol(p: Tensor, z_target: Tensor, gather: bool = True) -> Tensor:
    """Mean over the batch of 2 − 2·cos(p, sg(z_target)), BYOL's normalised squared error.

    A mean of per-sample terms: the mean over ranks already equals the loss on the concatenated
    batch, so `gather` is accepted for a uniform signature and needs no exchange.
    """
    del gather
    check_pair(p, z_target, min_batch=1, names="p,z_target")
    return (2 - 2 * _CosineToTarget.apply(p, z_target.detach())).mean()


class BYOLLoss(nn.Module):
    """Module form of :func:`byol`."""

    def __init__(self, gather: bool = True):
        super().__init__()
        self.gather = gather

    def forward(self, p: Tensor, z_target: Tensor) -> Tensor:
        return byol(p, z_target, self.gather)


__all__ = ["BYOLLoss", "byol"]
