"""The logreg protocol: scikit-learn's multinomial logistic regression on frozen features, a
solver-exact counterpart to the SGD linear protocol.

Features are standardised (default), L2-normalised (seed 004) or left as they are; `calibrated`
wraps the model in a sigmoid `CalibratedClassifierCV` with `cv_folds` folds (seed 004).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .accuracy import topk_accuracy
from .encoder import Encoder
from .errors import EvaluationError
from .features import extract_features
from .options import protocol_options, split_network
from .subsets import few_shot


def normalise(train: np.ndarray, test: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets standardised with the training split's statistics, L2-normalised per
    row, or unchanged."""
    if how == "standardise":
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(train)
        return scaler.transform(train), scaler.transform(test)
    if how == "l2":
        from sklearn.preprocessing import normalize

        return normalize(train), normalize(test)
    if how == "none":
        return train, test
    raise EvaluationError(f"normalize={how!r}: valid: standardise, l2, none")


def logreg_scores(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    num_classes: int,
    max_iter: int = 1000,
    C: float = 1.0,
    seed: int = 0,
    normalize: str = "standardise",
    calibrated: bool = False,
    cv_folds: int = 5,
) -> tuple[Tensor, int]:
    """Class probabilities (n_test, num_classes) and the solver's iteration count (the most
    over the calibration folds); classes absent from the training split get probability 0."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression

    if max_iter < 1 or not C > 0:
        raise EvaluationError(f"max_iter={max_iter}, C={C}: must be > 0")
    if calibrated and cv_folds < 2:
        raise EvaluationError(f"cv_folds={cv_folds}: must be >= 2")
    train, test = normalise(train_features.numpy(), test_features.numpy(), normalize)
    model: Any = LogisticRegression(max_iter=max_iter, C=C, random_state=seed)
    if calibrated:
        model = CalibratedClassifierCV(model, method="sigmoid", cv=cv_folds)
    model.fit(train, train_labels.numpy())
    probabilities = model.predict_proba(test)
    scores = np.zeros((test_features.shape[0], num_classes), dtype=np.float32)
    scores[:, model.classes_] = probabilities
    fitted = [c.estimator for c in model.calibrated_classifiers_] if calibrated else [model]
    return torch.from_numpy(scores), int(max(np.max(m.n_iter_) for m in fitted))


def logreg_protocol(
    encoder: Encoder, features: str, seed: int = 0, **options: Any
) -> dict[str, Any]:
    """Fit on the training split's frozen features (or its few-shot subset); test top-1/5."""
    _, settings = split_network(protocol_options("logreg", options))
    train_features, train_labels = extract_features(encoder, "train", features)
    test_features, test_labels = extract_features(encoder, "test", features)
    keep = few_shot(
        train_labels,
        torch.arange(len(train_labels)),
        settings.pop("label_fraction"),
        settings.pop("per_class"),
        seed,
    )
    scores, iterations = logreg_scores(
        train_features[keep],
        train_labels[keep],
        test_features,
        encoder.num_classes,
        seed=seed,
        **settings,
    )
    return {
        **topk_accuracy(scores, test_labels),
        "iterations": iterations,
        "converged": iterations < settings["max_iter"],
        "n_train": len(keep),
        "n_test": test_features.shape[0],
    }
