"""Multi-crop NT-Xent: every crop of a batch in one similarity matrix (solo-learn's multi-crop
SimCLR, seed 002), after SwAV's multi-crop (Caron et al., 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import TemperatureLoss, check_embeddings, check_positive, full_precision, normalize
from .distributed import gather_no_grad, gather_views
from .row_logsumexp import row_logsumexp


@full_precision
def nt_xent_multicrop(
    z: Tensor,
    labels: Tensor | None = None,
    temperature: float = 0.1,
    gather: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """Mean over the N·V anchors z_i^k of the mean over their V−1 positives z_i^m (m ≠ k) of
    −log(exp(s_im) / (exp(s_im) + Σ_{n∈N(i)} exp(s_in))), s = z_i^k·z/τ on unit vectors.

    N(i) holds every crop of every other sample (all ranks): each positive pair's denominator is
    that positive plus the negatives, never the anchor's other positives. With V = 2 this is
    NT-Xent. `z` has shape (batch, views, dim); `chunk_size=k` computes the logits k rows at a
    time, in memory linear in the batch.
    """
    if not isinstance(z, Tensor) or z.ndim != 3 or z.shape[1] < 2:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"z must have shape (batch, views >= 2, dim), got {shape}")
    check_embeddings(z[:, 0], "z")
    check_positive("temperature", temperature)
    views = z.shape[1]
    per_view = [normalize(z[:, k]) for k in range(views)]
    candidates, own_per_view = gather_views(per_view, gather)
    if labels is not None:
        if labels.ndim != 1 or labels.shape[0] != z.shape[0]:
            raise ValueError(f"labels must have shape ({z.shape[0]},), got {tuple(labels.shape)}")
        return _supervised(per_view, candidates, own_per_view, labels, temperature, gather)
    # Row (k, i) must not see sample i's own crops, itself included: they are not negatives.
    own_crops = torch.stack(own_per_view, dim=1).repeat(views, 1)
    anchors = torch.cat(per_view) / temperature
    lse_negatives = row_logsumexp(anchors, candidates, own_crops, chunk_size).view(views, -1)
    stacked = torch.stack(per_view)
    positives = torch.einsum("kid,mid->kmi", stacked, stacked) / temperature
    terms = torch.logaddexp(positives, lse_negatives[:, None]) - positives
    off_diagonal = ~torch.eye(views, dtype=torch.bool, device=z.device)
    return terms[off_diagonal].mean()


def _supervised(
    per_view: list[Tensor],
    candidates: Tensor,
    own_per_view: list[Tensor],
    labels: Tensor,
    temperature: float,
    gather: bool,
) -> Tensor:
    """The labelled form over dense logits: positives share the anchor's label, negatives not."""
    anchors = torch.cat(per_view)
    anchor_labels = labels.to(anchors.device).repeat(len(per_view))
    column_labels = gather_no_grad(labels.to(anchors.device), gather).repeat(len(per_view))
    logits = anchors @ candidates.T / temperature
    same = anchor_labels[:, None] == column_labels[None, :]
    lse_negatives = torch.logsumexp(logits.masked_fill(same, float("-inf")), dim=1)
    positive = same.scatter(1, torch.cat(own_per_view)[:, None], False)
    terms = torch.logaddexp(logits, lse_negatives[:, None]) - logits
    per_anchor = (terms * positive).sum(dim=1) / positive.sum(dim=1)
    return per_anchor.mean()


class NTXentMulticropLoss(TemperatureLoss):
    """Module form of :func:`nt_xent_multicrop`."""

    def __init__(
        self, temperature: float = 0.1, gather: bool = True, chunk_size: int | None = None
    ):
        super().__init__(temperature, gather, chunk_size)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return nt_xent_multicrop(z, labels, self.temperature, self.gather, self.chunk_size)
