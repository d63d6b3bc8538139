"""The same seed gives the same loss curve and weights on CPU, bit for bit, over 2 epochs.

SimCLR runs in fresh interpreters (so no state left in this process can make two runs agree);
ReLIC (EMA target, gamma schedule) runs twice in this process (so state left by the first run
cannot change the second). A different seed must change the curve, or the check proves nothing.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch

from contrastkit.train.run import pretrain

from .small_run import small_config

RELIC = {"method": "relic", "gamma_decay_steps": 10, "loss.gamma": 1.0}


class _StopAfterFirstEpoch(L.Callback):
    """Ends a 2-epoch fit after epoch 0: its schedule, hence its first half, is the full run's."""

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.should_stop = True


def _curve(out: Path) -> list[tuple[str, str, str]]:
    """(epoch, step, train/loss_step) as in metrics.csv: strings, so equal means bit for bit."""
    with open(out / "logs" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [(r["epoch"], r["step"], r["train/loss_step"]) for r in rows if r["train/loss_step"]]


def _losses(curve: list[tuple[str, str, str]], epoch: str | None = None) -> list[str]:
    """The loss column of `curve`, of one epoch when given."""
    return [loss for e, _, loss in curve if epoch is None or e == epoch]


def _assert_same_weights(first: Path, second: Path) -> None:
    """Every tensor of the two final checkpoints (encoder, heads, EMA target, probe) is equal."""
    a, b = (
        torch.load(p / "last.ckpt", map_location="cpu", weights_only=False) for p in (first, second)
    )
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    for name, tensor in a["probe"]["classifier"].items():
        assert torch.equal(tensor, b["probe"]["classifier"][name]), f"probe.{name}"


def _cli_run(out: Path, seed: int) -> subprocess.Popen:
    """`contrastkit pretrain` (the small configuration, 2 epochs) in a fresh interpreter.

    One thread each: the runs go in parallel on a small machine, and the thread count must match
    between runs to compare (CPU reductions split their work by thread).
    """
    args = [
        *("--dataset", "digits", "--epochs", "2", "--batch-size", "128"),
        *("--projector-hidden-dim", "64", "--projector-out-dim", "32"),
        *("--loggers", "csv", "--progress", "false", "--out", str(out), f"seed={seed}"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "contrastkit.cli", "pretrain", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_simclr_in_fresh_interpreters_repeats_bit_for_bit(tmp_path: Path) -> None:
    folders = {"a": (tmp_path / "a", 0), "b": (tmp_path / "b", 0), "other": (tmp_path / "c", 1)}
    runs = [_cli_run(out, seed) for out, seed in folders.values()]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    first, second, other = (_curve(out) for out, _ in folders.values())
    assert {epoch for epoch, _, _ in first} == {"0", "1"}  # the whole curve, not a prefix
    assert first == second
    _assert_same_weights(folders["a"][0], folders["b"][0])
    assert _losses(other) != _losses(first)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, as the CLI runs above: several times faster on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_relic_twice_in_one_process_repeats_bit_for_bit(tmp_path: Path) -> None:
    pretrain(small_config(tmp_path / "a", epochs=2, **RELIC))
    pretrain(small_config(tmp_path / "b", epochs=2, **RELIC))
    first, second = _curve(tmp_path / "a"), _curve(tmp_path / "b")
    assert {epoch for epoch, _, _ in first} == {"0", "1"}
    assert first == second
    _assert_same_weights(tmp_path / "a", tmp_path / "b")

    config = small_config(tmp_path / "other", epochs=2, seed=1, **RELIC)
    pretrain(config, callbacks=[_StopAfterFirstEpoch()])
    other = _curve(tmp_path / "other")
    assert {epoch for epoch, _, _ in other} == {"0"}
    assert _losses(other) != _losses(first, "0")
