"""Weighted k-nearest-neighbour classification on cosine similarity (Wu et al. 2018, InstDisc;
the kNN monitor of solo-learn) or Euclidean distance: no training, so it reads the
representation as it is."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .accuracy import topk_accuracy
from .encoder import Encoder
from .errors import EvaluationError
from .features import extract_features


def knn_classify(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk: int = 1024,
    metric: str = "cosine",
) -> Tensor:
    """Class scores (n_test, classes): each of the `k` training samples most similar to a test
    sample adds exp(similarity / temperature) to its class; `k` is capped at n_train.

    The similarity is the cosine (`metric="cosine"`) or minus the Euclidean distance of the raw
    features (`"euclidean"`).
    """
    if k < 1:
        raise EvaluationError(f"k={k}: must be >= 1")
    if not temperature > 0:
        raise EvaluationError(f"temperature={temperature}: must be > 0")
    if metric not in ("cosine", "euclidean"):
        raise EvaluationError(f"metric={metric!r}: valid: cosine, euclidean")
    classes = num_classes or int(train_labels.max()) + 1
    k = min(k, train_features.shape[0])
    train, test = train_features.float(), test_features.float()
    if metric == "cosine":
        train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    scores = []
    for queries in test.split(chunk):
        similar = queries @ train.T if metric == "cosine" else -torch.cdist(queries, train)
        similarity, neighbours = similar.topk(k, dim=1)
        votes = torch.zeros(queries.shape[0], classes, device=queries.device)
        scores.append(
            votes.scatter_add_(1, train_labels[neighbours], (similarity / temperature).exp())
        )
    return torch.cat(scores)


def knn_protocol(
    encoder: Encoder,
    features: str,
    k: int = 200,
    temperature: float = 0.1,
    metric: str = "cosine",
) -> dict[str, Any]:
    """kNN of the test split's frozen features among the training split's."""
    train_features, train_labels = extract_features(encoder, "train", features)
    test_features, test_labels = extract_features(encoder, "test", features)
    scores = knn_classify(
        train_features,
        train_labels,
        test_features,
        k,
        temperature,
        encoder.num_classes,
        metric=metric,
    )
    return {
        **topk_accuracy(scores, test_labels),
        "k": min(k, train_features.shape[0]),
        "temperature": temperature,
        "metric": metric,
        "n_train": train_features.shape[0],
        "n_test": test_features.shape[0],
    }
