"""A non-finite loss or gradient never reaches the weights: the run stops with one line naming
the step and the loss components and keeps the last good checkpoint, or, with `skip_nonfinite`,
skips up to that many steps and counts them in the log."""

from __future__ import annotations

import csv
import math
from collections.abc import Collection
from pathlib import Path

import pytest
import torch

from contrastkit import cli
from contrastkit.methods import Method, StepOutput
from contrastkit.train.errors import NonFiniteLossError
from contrastkit.train.run import pretrain

from .small_run import small_config

STEPS_PER_EPOCH = 11  # digits: all 1438 training images (val_fraction 0), batches of 128


def _poison(monkeypatch: pytest.MonkeyPatch, calls: Collection[int], kind: str = "loss") -> None:
    """Make the method's forward pass return a NaN loss (or a finite loss with NaN gradients)
    at the given 0-based calls."""
    forward = Method.forward
    count = iter(range(10**6))

    def poisoned(self: Method, views, labels=None) -> StepOutput:
        out = forward(self, views, labels)
        if next(count) not in calls:
            return out
        if kind == "loss":
            return StepOutput(out.loss * math.nan, out.features, out.components)
        weight = next(self.parameters())
        nan_gradient = 0.0 * torch.sqrt(weight.sum() * 0.0)  # value 0, gradient 0 * inf = NaN
        return StepOutput(out.loss + nan_gradient, out.features, out.components)

    monkeypatch.setattr(Method, "forward", poisoned)


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _all_finite(checkpoint: dict) -> bool:
    return all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _poison(monkeypatch, {STEPS_PER_EPOCH + 3})  # the fourth step of the second epoch
    out = tmp_path / "run"
    small = ["--batch-size", "128", "--projector-hidden-dim", "64", "--projector-out-dim", "32"]
    quiet = ["--loggers", "csv", "--progress", "false", "--out", str(out)]

    code = cli.main(["pretrain", "--method", "vicreg", "--epochs", "2", *small, *quiet])

    assert code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    step = STEPS_PER_EPOCH + 3
    assert line.startswith(
        f"contrastkit: error: non-finite loss at step {step} (epoch 1): loss=nan, "
    )
    for component in ("invariance=", "variance=", "covariance="):
        assert component in line
    assert line.endswith(f"the last good checkpoint is {out / 'last.ckpt'}")
    last = _checkpoint(out / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (0, STEPS_PER_EPOCH)
    assert _all_finite(last)
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["epoch000.ckpt", "last.ckpt"]


def test_nan_gradients_stop_the_run_before_the_optimiser_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison(monkeypatch, {2}, kind="gradients")
    with pytest.raises(NonFiniteLossError) as error:
        pretrain(small_config(tmp_path / "run"))
    message = str(error.value)
    assert message.startswith("non-finite gradients at step 2 (epoch 0): loss=")
    assert message.endswith("no checkpoint yet")
    assert "\n" not in message
    assert not list((tmp_path / "run").glob("*.ckpt"))


def test_skip_nonfinite_tolerates_k_steps_and_counts_them_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison(monkeypatch, {1, 4})
    out = tmp_path / "run"
    pretrain(small_config(out, skip_nonfinite=2))

    last = _checkpoint(out / "last.ckpt")
    assert last["global_step"] == STEPS_PER_EPOCH - 2  # the two skipped steps made no update
    assert last["skipped_nonfinite"] == 2
    assert _all_finite(last)
    with open(out / "logs" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts = [
        float(row["train/skipped_nonfinite"]) for row in rows if row["train/skipped_nonfinite"]
    ]
    assert counts == [2.0]
    assert all(
        math.isfinite(float(row["train/loss_step"])) for row in rows if row["train/loss_step"]
    )


def test_one_step_more_than_skip_nonfinite_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison(monkeypatch, {1, 4})
    with pytest.raises(NonFiniteLossError, match=r"step 3 \(epoch 0\).*2 such steps exceed skip"):
        pretrain(small_config(tmp_path / "run", skip_nonfinite=1))
