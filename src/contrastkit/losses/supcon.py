"""Supervised contrastive loss, the paper's L_out (Khosla et al., 2020)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from ._common import TemperatureLoss, check_embeddings, check_positive, full_precision, normalize
from .distributed import gather_no_grad, gather_views, is_gathering, own_columns, world_size
from .row_logsumexp import row_logsumexp


@full_precision
def supcon(
    z: Tensor,
    labels: Tensor | None = None,
    temperature: float = 0.1,
    gather: bool = True,
    chunk_size: int | None = None,
    base_temperature: float | None = None,
) -> Tensor:
    """L_out over all N·V anchors: −1/|P(i)| Σ_{p∈P(i)} log softmax_{a≠i}(z_i·z_a/τ)[p].

    Positives are the other views of the sample and of every sample with the same label;
    `labels=None` keeps only the other views, which for V=2 is NT-Xent. The mean runs over the
    anchors that have at least one positive. `chunk_size=k` computes the logits k rows at a
    time, in memory linear in the batch. `base_temperature` multiplies the loss by
    τ/base_temperature as HobbitLong/SupContrast does (its default 0.07); None means τ, no factor.
    """
    if not isinstance(z, Tensor) or z.ndim != 3:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"z must have shape (batch, views, dim), got {shape}")
    n, views = z.shape[0], z.shape[1]
    if n < 2 or views < 1:
        raise ValueError(
            f"z has batch size {n} with {views} view(s); supcon needs a batch of at least 2 "
            "samples (for negatives) and at least 1 view"
        )
    check_embeddings(z[:, 0], "z")
    check_positive("temperature", temperature)
    if base_temperature is not None:
        check_positive("base_temperature", base_temperature)
    if labels is not None and (labels.ndim != 1 or labels.shape[0] != n):
        raise ValueError(f"labels must have shape ({n},) to match z, got {tuple(labels.shape)}")

    ids = labels if labels is not None else own_columns(n, z.device, gather)
    # View-major anchors and candidates: all samples of view 0 first, over the global batch.
    per_view = [normalize(z[:, k]) for k in range(views)]
    anchors = torch.cat(per_view)
    candidates, own_per_view = gather_views(per_view, gather)
    own = torch.cat(own_per_view)
    candidate_ids = gather_no_grad(ids.to(z.device), gather).repeat(views)
    lse = row_logsumexp(anchors / temperature, candidates, own[:, None], chunk_size)
    # Σ_{p∈P(i)} z_i·z_p = z_i·(sum of i's class) − z_i·z_i: O(N·D), no N×N mask. Subtracting the
    # anchor's own candidate row keeps the gradient of the self term exactly cancelled. Sums over
    # classes of thousands of rows run in float64, where float32 would lose ~1e-4 of the term.
    classes, candidate_class = torch.unique(candidate_ids, return_inverse=True)
    wide = candidates.double()
    class_sums = wide.new_zeros(classes.shape[0], wide.shape[1]).index_add(0, candidate_class, wide)
    anchor_class = candidate_class[own]
    positive_count = torch.bincount(candidate_class, minlength=classes.shape[0])[anchor_class] - 1
    others = class_sums[anchor_class] - wide[own]
    positive_sum = (anchors.double() * others).sum(dim=1).to(anchors.dtype)
    has_positive = positive_count > 0
    per_anchor = lse - positive_sum / temperature / positive_count.clamp_min(1)
    loss = _mean_over_global_anchors(per_anchor[has_positive], has_positive.sum(), gather)
    return loss if base_temperature is None else loss * (temperature / base_temperature)


def _mean_over_global_anchors(values: Tensor, local_count: Tensor, gather: bool) -> Tensor:
    """Sum of local values over the global count, scaled so the mean over ranks is the global mean.

    Ranks may hold different numbers of anchors with positives, so a plain local mean would
    weight ranks unequally.
    """
    if not is_gathering(gather):
        return values.sum() / local_count.clamp_min(1)
    count = local_count.detach().clone()
    dist.all_reduce(count)
    return values.sum() * world_size() / count.clamp_min(1)


class SupConLoss(TemperatureLoss):
    """Module form of :func:`supcon`."""

    def __init__(
        self,
        temperature: float = 0.1,
        gather: bool = True,
        chunk_size: int | None = None,
        base_temperature: float | None = None,
    ):
        super().__init__(temperature, gather, chunk_size)
        if base_temperature is not None:
            check_positive("base_temperature", base_temperature)
        self.base_temperature = base_temperature

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return supcon(
            z, labels, self.temperature, self.gather, self.chunk_size, self.base_temperature
        )
