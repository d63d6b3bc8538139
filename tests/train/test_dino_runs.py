"""DINO through the trainer: the last layer frozen for N optimiser steps, a bit-exact resume
(centre, teacher, temperature schedule, freeze), and the collapse stop (digits, CPU)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from contrastkit import cli
from contrastkit.models.ema import EMA
from contrastkit.train.run import pretrain

from .small_run import small_config

DINO = {
    "method": "dino",
    "projector_bottleneck_dim": 16,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.04,
    "warmup_epochs": 0,
}
LAST_LAYER = "method.projector.last_layer.weight"


class _LastLayerPerStep(L.Callback):
    """The student's last-layer weight before each optimiser step, and after the last."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def _record(self, module: L.LightningModule) -> None:
        self.weights.append(module.method.projector.last_layer.weight.detach().clone())

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        self._record(module)

    def on_train_end(self, trainer, module) -> None:
        self._record(module)


class _StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.should_stop = True


def test_the_last_layer_is_bit_identical_for_n_steps_and_moves_after(tmp_path: Path) -> None:
    """SGD with momentum and weight decay (the defaults) would move a layer whose gradient
    were merely zero; a frozen step leaves it exactly as it was."""
    recorder = _LastLayerPerStep()
    config = small_config(tmp_path, **{**DINO, "optimizer": "sgd", "weight_decay": 1e-4})
    config.freeze_last_layer_steps = 3
    pretrain(config, callbacks=[recorder])
    first, *rest = recorder.weights
    assert len(rest) == 11  # 11 steps of digits at batch 128
    for step in range(3):  # the weight after optimiser steps 0, 1 and 2
        assert torch.equal(rest[step], first), step
    assert not torch.equal(rest[3], first)  # step 3 is the first to move it
    assert not torch.equal(rest[4], rest[3])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return dict(checkpoint["state_dict"])


@pytest.mark.slow
def test_resume_mid_freeze_and_mid_warm_up_reproduces_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    """Stopped at step 11 of 22, inside the freeze (15 steps) and the teacher temperature's
    warm-up (16 steps, 0.02 → 0.06): the resumed run ends bit-identical to the straight one."""
    extra = {
        **DINO,
        "epochs": 2,
        "freeze_last_layer_steps": 15,
        "teacher_temp_warmup_steps": 16,
        "teacher_temp_start": 0.02,
        "loss.teacher_temp": 0.06,
    }
    pretrain(small_config(tmp_path / "straight", **extra))
    pretrain(small_config(tmp_path / "stopped", **extra), callbacks=[_StopAfterFirstEpoch()])
    interrupted = _weights(tmp_path / "stopped" / "last.ckpt")
    pretrain(small_config(tmp_path / "stopped", resume=True, **extra))

    straight = _weights(tmp_path / "straight" / "last.ckpt")
    resumed = _weights(tmp_path / "stopped" / "last.ckpt")
    assert straight.keys() == resumed.keys()
    assert {"method.state.center", "method.target.target.1.last_layer.weight"} <= set(straight)
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)
    for name in ("method.state.center", LAST_LAYER, "method.target.target.1.mlp.0.weight"):
        assert not torch.equal(interrupted[name], straight[name]), name


def _dino_cli(out: Path, *extra: str) -> int:
    args = ["pretrain", "--method", "dino", "--epochs", "2", "--batch-size", "128"]
    args += ["--out", str(out), "--progress", "false", "--loggers", "csv", "probe=false"]
    args += ["projector_hidden_dim=64", "projector_out_dim=32", "projector_bottleneck_dim=16"]
    return cli.main([*args, *extra])


@pytest.mark.parametrize(
    ("teacher_row", "state"),
    [(torch.zeros(32), "near log K"), (10 * torch.eye(32)[0], "near 0")],
)
def test_a_collapsed_teacher_stops_the_run_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    teacher_row: torch.Tensor,
    state: str,
) -> None:
    """A teacher that gives every image one output: zeros are uniform after sharpening (log K),
    a large one-hot row stays one-hot although the centre moves towards it (0)."""

    def collapsed(self: EMA, images: torch.Tensor) -> torch.Tensor:
        return teacher_row.expand(images.shape[0], -1).clone()

    monkeypatch.setattr(EMA, "forward", collapsed)
    assert _dino_cli(tmp_path) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("contrastkit: error: DINO collapsed in epoch 0: the teacher entropy")
    assert state in line


def test_a_healthy_run_logs_its_monitors_and_does_not_stop(tmp_path: Path) -> None:
    assert _dino_cli(tmp_path) == 0
    with open(tmp_path / "logs" / "metrics.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["train/teacher_entropy"]]
    assert len(rows) == 2  # one per epoch
    for row in rows:
        entropy = float(row["train/teacher_entropy"])
        assert 0.01 * math.log(32) < entropy < 0.99 * math.log(32)
        assert float(row["train/teacher_kl_uniform"]) >= 0
        assert float(row["train/center_norm"]) > 0
