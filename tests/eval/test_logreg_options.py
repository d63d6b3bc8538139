"""Logistic regression's options: the calibrated variant is scikit-learn's, run directly; the
normalisation changes what the model sees."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from contrastkit.eval import logreg_scores


def _data(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat(30)
    features = torch.eye(4, 10)[labels] * 2 + torch.randn(120, 10, generator=generator)
    test = torch.eye(4, 10)[labels[:40]] * 2 + torch.randn(40, 10, generator=generator)
    return features, labels, test


def test_calibrated_logreg_equals_scikit_learn_run_directly() -> None:
    train, labels, test = _data()
    scores, iterations = logreg_scores(
        train, labels, test, 4, max_iter=100, normalize="l2", calibrated=True, cv_folds=5
    )
    model = CalibratedClassifierCV(
        LogisticRegression(max_iter=100, random_state=0), method="sigmoid", cv=5
    ).fit(normalize(train.numpy()), labels.numpy())
    expected = model.predict_proba(normalize(test.numpy()))
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-6)
    plain, _ = logreg_scores(train, labels, test, 4, max_iter=100, normalize="l2")
    assert not torch.allclose(plain, scores, atol=1e-3)  # calibration changes the scores
    assert 0 < iterations <= 100


def test_l2_normalisation_ignores_each_rows_scale_and_standardising_does_not() -> None:
    train, labels, test = _data()
    scale = torch.linspace(0.2, 5.0, len(train))[:, None]
    for how, invariant in (("l2", True), ("standardise", False), ("none", False)):
        first, _ = logreg_scores(train, labels, test, 4, normalize=how)
        second, _ = logreg_scores(train * scale, labels, test, 4, normalize=how)
        assert torch.allclose(first, second, atol=1e-5) == invariant, how
