"""InfoNCE and NT-Xent (SimCLR): cross-entropy over cosine-similarity logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_pair, check_positive, full_precision, index_mask, normalize, own_columns
from .distributed import gather_rows, row_offset


@full_precision
def info_nce(
    z1: Tensor, z2: Tensor, temperature: float = 0.1, symmetric: bool = False, gather: bool = True
) -> Tensor:
    """Cross-entropy of the cross-view logits u·vᵀ/τ with target i (van den Oord et al., 2018).

    With `symmetric=True` the v→u direction is averaged in, as in CLIP.
    """
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    u, v = normalize(z1), normalize(z2)
    target = own_columns(u.shape[0], row_offset(u.shape[0], gather), u.device)
    loss = F.cross_entropy(u @ gather_rows(v, gather).T / temperature, target)
    if symmetric:
        loss_vu = F.cross_entropy(v @ gather_rows(u, gather).T / temperature, target)
        loss = (loss + loss_vu) / 2
    return loss


@full_precision
def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, gather: bool = True) -> Tensor:
    """SimCLR's NT-Xent: 2N anchors, each against the 2N−1 other embeddings (Chen et al., 2020)."""
    check_pair(z1, z2)
    check_positive("temperature", temperature)
    n = z1.shape[0]
    anchors = torch.cat([normalize(z1), normalize(z2)])
    u_all, v_all = gather_rows(anchors[:n], gather), gather_rows(anchors[n:], gather)
    total, offset = u_all.shape[0], row_offset(n, gather)
    logits = anchors @ torch.cat([u_all, v_all]).T / temperature
    # Anchor u_i sits at column offset+i, v_i at total+offset+i; each is the positive of the other.
    own = own_columns(n, offset, logits.device)
    own = torch.cat([own, own + total])
    positive = torch.cat([own[n:], own[:n]])
    return F.cross_entropy(logits.masked_fill(index_mask(own, 2 * total), float("-inf")), positive)


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce`."""

    def __init__(self, temperature: float = 0.1, symmetric: bool = False, gather: bool = True):
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature, self.symmetric, self.gather = temperature, symmetric, gather

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return info_nce(z1, z2, self.temperature, self.symmetric, self.gather)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent`."""

    def __init__(self, temperature: float = 0.5, gather: bool = True):
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature, self.gather = temperature, gather

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return nt_xent(z1, z2, self.temperature, self.gather)


__all__ = ["InfoNCELoss", "NTXentLoss", "info_nce", "nt_xent"]
