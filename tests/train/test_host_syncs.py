"""A training step reads one value back from the device (the non-finite skip decision, loss and
gradients together); the step's figures are read back only every `log_every_n_steps` steps.

On a CPU nothing waits, so the readbacks are counted where Python asks for them: every Tensor
method that copies a value to the host, between one training batch's start and the next's
(the step, the loggers, the progress bar and the checkpoint callback all run in between).
tests/gpu/test_cuda.py counts the device's own synchronisations on a GPU.
"""

from __future__ import annotations

import csv
import traceback
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch

from contrastkit.methods import Method, StepOutput
from contrastkit.train.run import pretrain

from .small_run import small_config

READBACKS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
STEPS = 11  # digits: 1437 training images, batches of 128


class _Readbacks:
    """Every call of a READBACKS method, with the line of our code or Lightning's that made it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in READBACKS:
            monkeypatch.setattr(
                torch.Tensor, name, self._counting(name, getattr(torch.Tensor, name))
            )

    def _counting(self, name: str, method: Callable) -> Callable:
        def counted(tensor: torch.Tensor, *args, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            self.calls.append(f"{name} at {Path(caller.filename).name}:{caller.lineno}")
            return method(tensor, *args, **kwargs)

        return counted


class _PerStep(L.Callback):
    """The readbacks made from each training batch's start to the next one's, or to the probe's
    evaluation or the epoch's end, which read their figures once an epoch."""

    def __init__(self, readbacks: _Readbacks) -> None:
        self.readbacks = readbacks
        self.per_step: dict[int, list[str]] = {}
        self._open: tuple[int, int] | None = None  # (step, calls before it)

    def _close(self) -> None:
        if self._open is not None:
            step, start = self._open
            self.per_step[step] = self.readbacks.calls[start:]
            self._open = None

    def on_train_batch_start(self, trainer: L.Trainer, module, batch, batch_idx: int) -> None:
        self._close()
        self._open = (trainer.global_step, len(self.readbacks.calls))

    def on_validation_start(self, trainer: L.Trainer, module) -> None:
        self._close()

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        self._close()


def _record_losses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The loss of every forward pass, in order (read after training, outside the count)."""
    forward, losses = Method.forward, []

    def recording(self: Method, views, labels=None) -> StepOutput:
        out = forward(self, views, labels)
        losses.append(out.loss.detach().clone())
        return out

    monkeypatch.setattr(Method, "forward", recording)
    return losses


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("simclr", {}),
        ("simclr", {"grad_clip": 0.05}),
        (
            "simclr",
            {"grad_clip": 0.05, "grad_clip_mode": "per_parameter", "weight_decay_final": 0.4},
        ),
        ("dino", {"freeze_last_layer_steps": 3}),  # monitors, centre, freeze
    ],
    ids=["plain", "clip-global", "clip-per-parameter-wd-schedule", "dino"],
)
def test_a_step_reads_back_one_value_and_its_figures_every_n_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, extra: dict[str, object]
) -> None:
    """Gradient clipping, the weight-decay schedule and DINO add no readback."""
    losses = _record_losses(monkeypatch)
    readbacks = _Readbacks(monkeypatch)
    counter = _PerStep(readbacks)
    every = 4
    config = small_config(
        tmp_path, method=method, log_every_n_steps=every, progress=True, probe=True, **extra
    )
    pretrain(config, callbacks=[counter])
    monkeypatch.undo()

    assert sorted(counter.per_step) == list(range(STEPS))
    for step, calls in counter.per_step.items():
        expected = 2 if step % every == 0 else 1  # the skip decision, and the figures
        assert len(calls) == expected, f"step {step}: {calls}"
    with open(tmp_path / "logs" / "metrics.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["train/loss_step"]]
    assert [int(row["step"]) for row in rows] == list(range(0, STEPS, every))
    for row in rows:  # each written figure is its own step's loss
        assert float(row["train/loss_step"]) == pytest.approx(float(losses[int(row["step"])]))
    assert all(float(row["img/s"]) > 0 for row in rows[1:])
    assert not rows[0]["img/s"]  # no interval before the first figures
