"""SimSiam (Chen & He, 2021): negative cosine between each prediction and the other projection."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_pair, full_precision


@full_precision
def simsiam(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, gather: bool = True) -> Tensor:
    """½[−cos(p1, sg(z2)) − cos(p2, sg(z1))], mean over the batch.

    The loss is a mean of per-sample terms, so the mean over ranks already equals the loss on
    the concatenated batch: `gather` is accepted for a uniform signature and needs no exchange.
    """
    del gather
    check_pair(p1, p2, min_batch=1, names="p1,p2")
    check_pair(z1, z2, min_batch=1, names="z1,z2")
    check_pair(p1, z1, min_batch=1, names="p1,z1")
    cos_12 = F.cosine_similarity(p1, z2.detach(), dim=1)
    cos_21 = F.cosine_similarity(p2, z1.detach(), dim=1)
    return -(cos_12 + cos_21).mean() / 2


class SimSiamLoss(nn.Module):
    """Module form of :func:`simsiam`."""

    def __init__(self, gather: bool = True):
        super().__init__()
        self.gather = gather

    def forward(self, p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
        return simsiam(p1, p2, z1, z2, self.gather)
