"""The metrics protocol: the representation's geometry (alignment, uniformity, effective rank),
the label-free RankMe and α-ReQ of the probe split's features, a 2-D map of the test features,
and a kNN accuracy so that its record has top-1/top-5 too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..spectrum import alpha_req, rankme
from .accuracy import topk_accuracy
from .data import Images, batches
from .embedding_map import save_embedding_map
from .encoder import Encoder
from .errors import EvaluationError
from .features import embed, extract_features
from .geometry import alignment_uniformity, effective_rank
from .knn import knn_classify


@torch.no_grad()
def view_features(
    encoder: Encoder,
    images: Images,
    indices: Tensor,
    features: str,
    generator: torch.Generator,
    batch_size: int = 512,
) -> tuple[Tensor, Tensor]:
    """Features of two SimCLR views of each image at `indices`: positive pairs, row by row.

    The views are pretraining's two global views of the dataset (default configuration), the
    same for every checkpoint, so alignment compares across methods.
    """
    augment = encoder.recipe().augmentation()
    first, second = [], []
    for batch, _ in batches(images, batch_size, indices):
        view_a, view_b = augment(batch.to(encoder.device), generator=generator)
        first.append(embed(encoder, view_a, features).float().cpu())
        second.append(embed(encoder, view_b, features).float().cpu())
    return torch.cat(first), torch.cat(second)


def metrics_protocol(
    encoder: Encoder,
    features: str,
    map_png: Path,
    k: int = 200,
    temperature: float = 0.1,
    max_samples: int = 4096,
    seed: int = 0,
) -> dict[str, Any]:
    """Geometry of the test features and kNN accuracy; the map goes to the PNG `map_png`.

    Alignment, uniformity and the map use at most `max_samples` test images (a seeded random
    subset: uniformity costs N² memory, t-SNE more); the effective rank uses all of them. RankMe
    and α-ReQ read the test split, the split pretraining's online probe and its per-epoch
    spectrum log report on by default (`val_fraction` 0).
    """
    if max_samples < 2:
        raise EvaluationError(f"max_samples={max_samples}: must be >= 2")
    train_features, train_labels = extract_features(encoder, "train", features)
    test_features, test_labels = extract_features(encoder, "test", features)
    scores = knn_classify(
        train_features, train_labels, test_features, k, temperature, encoder.num_classes
    )
    images = encoder.load("test")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(test_features), generator=generator)[:max_samples].sort().values
    view_a, view_b = view_features(encoder, images, chosen, features, generator)
    title = f"{encoder.spec} · {features} · {encoder.dataset} test"
    method = save_embedding_map(
        test_features[chosen], test_labels[chosen], images.classes, map_png, title, seed
    )
    return {
        **topk_accuracy(scores, test_labels),
        **alignment_uniformity(view_a, view_b, test_features[chosen]),
        "effective_rank": effective_rank(test_features),
        "rankme": rankme(test_features),
        "alpha_req": alpha_req(test_features),
        "n_probe": len(test_features),
        "feature_dim": test_features.shape[1],
        "map_png": str(map_png),
        "map_method": method,
        "geometry_samples": len(chosen),
        "k": min(k, train_features.shape[0]),
        "temperature": temperature,
        "n_train": train_features.shape[0],
        "n_test": test_features.shape[0],
    }
