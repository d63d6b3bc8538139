"""The frozen-feature classifiers on synthetic features: kNN, SGD linear, logistic regression."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.eval import (
    EvaluationError,
    knn_classify,
    logreg_scores,
    topk_accuracy,
    train_linear,
)


def _separable(n_per_class: int = 40, classes: int = 6, dim: int = 12, seed: int = 0):
    """Gaussian clusters around scaled basis vectors: linearly separable with a wide margin."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    centres = 4 * torch.eye(classes, dim)
    features = centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=generator)
    return features, labels


def test_knn_is_perfect_on_separable_clusters() -> None:
    train_f, train_y = _separable(seed=0)
    test_f, test_y = _separable(n_per_class=10, seed=1)
    scores = knn_classify(train_f, train_y, test_f, k=20, temperature=0.1)
    assert scores.shape == (len(test_y), 6)
    assert topk_accuracy(scores, test_y)["top1"] == 1.0


def test_linear_is_perfect_on_separable_clusters() -> None:
    train_f, train_y = _separable(seed=0)
    test_f, test_y = _separable(n_per_class=10, seed=1)
    classifier = train_linear(train_f, train_y, 6, epochs=30, batch_size=32)
    with torch.no_grad():
        assert topk_accuracy(classifier(test_f), test_y)["top1"] == 1.0


def test_linear_learns_a_shifted_task_and_is_deterministic() -> None:
    # Clusters far from the origin and a bias-only difference between two classes.
    train_f, train_y = _separable(classes=3, dim=4)
    train_f = train_f + 10.0
    first = train_linear(train_f, train_y, 3, epochs=40, seed=3)
    second = train_linear(train_f, train_y, 3, epochs=40, seed=3)
    torch.testing.assert_close(first.weight, second.weight, rtol=0, atol=0)
    with torch.no_grad():
        assert topk_accuracy(first(train_f), train_y)["top1"] == 1.0


def test_logreg_is_perfect_on_separable_clusters_and_gives_probabilities() -> None:
    train_f, train_y = _separable(seed=0)
    test_f, test_y = _separable(n_per_class=10, seed=1)
    scores, iterations = logreg_scores(train_f, train_y, test_f, num_classes=8)
    assert scores.shape == (len(test_y), 8)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(len(test_y)))
    assert scores[:, 6:].abs().max() == 0  # classes without training samples
    assert topk_accuracy(scores, test_y)["top1"] == 1.0
    assert 0 < iterations < 1000


def _naive_knn(train_f, train_y, test_f, k, temperature, classes):
    """The definition, one test sample and one neighbour at a time, in float64."""
    scores = torch.zeros(len(test_f), classes, dtype=torch.float64)
    for i, query in enumerate(test_f.double()):
        similarities = []
        for j, candidate in enumerate(train_f.double()):
            cosine = query @ candidate / (query.norm() * candidate.norm())
            similarities.append((float(cosine), int(train_y[j])))
        similarities.sort(reverse=True)
        for cosine, label in similarities[:k]:
            scores[i, label] += math.exp(cosine / temperature)
    return scores


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.1), (3, 0.5), (7, 0.07), (50, 1.0)])
def test_knn_scores_equal_a_naive_reference(k: int, temperature: float) -> None:
    generator = torch.Generator().manual_seed(k)
    train_f = torch.randn(12, 5, generator=generator)
    train_y = torch.randint(0, 4, (12,), generator=generator)
    test_f = torch.randn(6, 5, generator=generator)
    scores = knn_classify(train_f, train_y, test_f, k, temperature, num_classes=4, chunk=4)
    expected = _naive_knn(train_f, train_y, test_f, min(k, 12), temperature, 4)
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=0)


def test_knn_with_k_one_is_the_nearest_neighbour_rule() -> None:
    train_f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    train_y = torch.tensor([0, 1, 2])
    test_f = torch.tensor([[0.9, 0.2], [-0.1, 3.0], [-5.0, -1.0]])
    scores = knn_classify(train_f, train_y, test_f, k=1, temperature=0.1)
    assert scores.argmax(dim=1).tolist() == [0, 1, 2]
    assert (scores > 0).sum(dim=1).tolist() == [1, 1, 1]


@pytest.mark.parametrize("options", [{"k": 0}, {"temperature": 0.0}])
def test_knn_rejects_bad_options(options: dict) -> None:
    features, labels = _separable(n_per_class=2)
    with pytest.raises(EvaluationError):
        knn_classify(features, labels, features, **options)


@pytest.mark.parametrize("classes", [3, 10])
def test_top5_is_never_below_top1(classes: int) -> None:
    generator = torch.Generator().manual_seed(classes)
    for _ in range(20):
        scores = torch.randn(50, classes, generator=generator)
        labels = torch.randint(0, classes, (50,), generator=generator)
        accuracy = topk_accuracy(scores, labels)
        assert 0.0 <= accuracy["top1"] <= accuracy["top5"] <= 1.0
        if classes <= 5:  # the five best classes are all of them
            assert accuracy["top5"] == 1.0


def test_topk_accuracy_counts_exactly() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
    labels = torch.tensor([0, 1, 1, 0])
    # Rows 0 and 2 are right at top-1; with 3 classes top-5 counts every row.
    assert topk_accuracy(scores, labels) == {"top1": 0.5, "top5": 1.0}
