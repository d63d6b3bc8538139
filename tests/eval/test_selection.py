"""Selection on a validation split carved from the training split, and resuming a stopped head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from contrastkit.data import holdout_split
from contrastkit.eval import topk_accuracy
from contrastkit.eval.fit import fit
from contrastkit.eval.linear import fit_linear
from contrastkit.eval.subsets import few_shot, validation_split


def _scripted(scores: list[dict[str, float]], select_by: str) -> tuple[int, float]:
    """Fit a one-weight model whose weight is the epoch number, validated by a script."""
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    epoch_now = {"value": 0}

    def train_epoch(epoch: int) -> None:
        epoch_now["value"] = epoch
        with torch.no_grad():
            model.weight.fill_(epoch)

    def validate() -> dict[str, float]:
        return scores[epoch_now["value"] - 1]

    result = fit(
        model, optimizer, scheduler, len(scores), train_epoch, validate, select_by,
        torch.Generator(),
    )  # fmt: skip
    return result.epoch, float(model.weight.detach())


def test_best_keeps_the_weights_of_the_epoch_the_validation_split_picks() -> None:
    scores = [
        {"top1": 0.2, "top5": 0.9},
        {"top1": 0.7, "top5": 0.5},
        {"top1": 0.5, "top5": 0.95},
        {"top1": 0.7, "top5": 0.6},
    ]
    assert _scripted(scores, "top1") == (2, 2.0)  # the first of the two best epochs
    assert _scripted(scores, "top5") == (3, 3.0)


def _clusters(seed: int = 0, n: int = 60, classes: int = 4, dim: int = 8):
    """Noisy, overlapping clusters: validation accuracy goes up and down over the epochs."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat(n // classes)
    features = torch.eye(classes, dim)[labels] + 0.9 * torch.randn(n, dim, generator=generator)
    return features, labels


@pytest.mark.parametrize("select_by", ["top1", "top5"])
def test_linear_selection_follows_validation_and_not_the_last_epoch(select_by: str) -> None:
    features, labels = _clusters(n=80, classes=8)
    val = _clusters(seed=1, n=80, classes=8)
    options = {"epochs": 12, "lr": 3.0, "batch_size": 8, "selection": "best"}
    classifier, result = fit_linear(
        features, labels, 8, val=val, select_by=select_by, seed=0, **options
    )
    figures = [h[select_by] for h in result.history]
    assert len(figures) == 12 and len(set(figures)) > 3  # the figure moves between epochs
    assert result.epoch == figures.index(max(figures)) + 1 != 12
    with torch.no_grad():
        assert topk_accuracy(classifier(val[0]), val[1]) == result.val
        assert topk_accuracy(classifier(val[0]), val[1])[select_by] > figures[-1]
    last, _ = fit_linear(features, labels, 8, seed=0, **{**options, "selection": "last"})
    assert not torch.equal(classifier.weight, last.weight)


def test_validation_splits_are_disjoint_parts_of_the_training_split() -> None:
    labels = torch.arange(5).repeat_interleave(20)
    keep, held = validation_split(labels, 0.1, "class_tail")
    expected = holdout_split(labels, 0.1)
    assert torch.equal(keep, expected[0]) and torch.equal(held, expected[1])
    keep, held = validation_split(labels, 0.1, "random", seed=3)
    again = validation_split(labels, 0.1, "random", seed=3)
    other = validation_split(labels, 0.1, "random", seed=4)
    assert len(held) == 10 and torch.equal(held, again[1]) and not torch.equal(held, other[1])
    assert sorted(torch.cat([keep, held]).tolist()) == list(range(100))


@pytest.mark.parametrize(
    ("fraction", "per_class", "count"), [(0.1, 0, 2), (0.01, 0, 1), (1.0, 3, 3)]
)
def test_few_shot_subsets_are_class_balanced_seeded_and_fixed(
    fraction: float, per_class: int, count: int
) -> None:
    labels = torch.arange(4).repeat_interleave(15)
    pool = torch.arange(60)
    chosen = few_shot(labels, pool, fraction, per_class, seed=0)
    assert torch.bincount(labels[chosen]).tolist() == [count] * 4
    assert torch.equal(chosen, few_shot(labels, pool, fraction, per_class, seed=0))
    assert not torch.equal(chosen, few_shot(labels, pool, fraction, per_class, seed=1))


class _StopError(Exception):
    pass


def test_a_stopped_linear_head_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    features, labels = _clusters()
    val = _clusters(seed=1, n=40)
    options = {"epochs": 6, "lr": 0.5, "batch_size": 16, "selection": "best", "seed": 2}
    whole, whole_result = fit_linear(features, labels, 4, val=val, **options)
    state = tmp_path / "head.state.pt"
    calls = {"n": 0}

    def stopping(chosen: torch.Tensor, _: torch.Generator) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4 * 3 + 2:  # 4 batches per epoch: stop inside epoch 4
            raise _StopError
        return features[chosen]

    with pytest.raises(_StopError):
        fit_linear(features, labels, 4, val=val, source=stopping, state_path=state, **options)
    assert state.is_file()
    resumed, result = fit_linear(features, labels, 4, val=val, state_path=state, **options)
    assert result.resumed_from == 4 and not state.exists()
    assert (result.epoch, result.history) == (whole_result.epoch, whole_result.history)
    torch.testing.assert_close(resumed.weight, whole.weight, rtol=0, atol=0)
    # resume=False starts over and ignores a saved state
    assert torch.equal(
        fit_linear(features, labels, 4, val=val, state_path=state, resume=False, **options)[
            0
        ].weight,
        whole.weight,
    )
