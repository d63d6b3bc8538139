"""The logreg protocol: scikit-learn's multinomial logistic regression on standardised frozen
features, a solver-exact counterpart to the SGD linear protocol."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .accuracy import topk_accuracy
from .encoder import Encoder
from .errors import EvaluationError
from .features import extract_features


def logreg_scores(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    num_classes: int,
    max_iter: int = 1000,
    C: float = 1.0,
    seed: int = 0,
) -> tuple[Tensor, int]:
    """Class probabilities (n_test, num_classes) and the solver's iteration count.

    Features are standardised with the training split's statistics; classes absent from the
    training split get probability 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if max_iter < 1 or not C > 0:
        raise EvaluationError(f"max_iter={max_iter}, C={C}: must be > 0")
    scaler = StandardScaler().fit(train_features.numpy())
    model = LogisticRegression(max_iter=max_iter, C=C, random_state=seed)
    model.fit(scaler.transform(train_features.numpy()), train_labels.numpy())
    probabilities = model.predict_proba(scaler.transform(test_features.numpy()))
    scores = np.zeros((test_features.shape[0], num_classes), dtype=np.float32)
    scores[:, model.classes_] = probabilities
    return torch.from_numpy(scores), int(np.max(model.n_iter_))


def logreg_protocol(
    encoder: Encoder, features: str, max_iter: int = 1000, C: float = 1.0, seed: int = 0
) -> dict[str, Any]:
    """Fit on the training split's frozen features; top-1/top-5 on the test split's."""
    train_features, train_labels = extract_features(encoder, "train", features)
    test_features, test_labels = extract_features(encoder, "test", features)
    scores, iterations = logreg_scores(
        train_features, train_labels, test_features, encoder.num_classes, max_iter, C, seed
    )
    return {
        **topk_accuracy(scores, test_labels),
        "iterations": iterations,
        "converged": iterations < max_iter,
        "n_train": train_features.shape[0],
        "n_test": test_features.shape[0],
    }
