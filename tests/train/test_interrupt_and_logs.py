"""Interrupted runs: Ctrl-C saves where it stopped, a resumed run's log and weights equal an
uninterrupted run's, and a second run into a run folder is refused unless --overwrite.

Log rows are compared in every column but the wall-clock ones (`time/epoch_s`, `img/s`).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from contrastkit import cli
from contrastkit.errors import EXIT_INTERRUPTED, TrainingInterruptedError
from contrastkit.train.run import pretrain

from .small_run import small_config
from .test_faults import ARGS, TIMEOUT_S, _assert_same_run, _command, _run

WALL_CLOCK = ("time/epoch_s", "img/s")


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "logs" / "metrics.csv", newline="") as handle:
        return [
            {k: v for k, v in row.items() if k not in WALL_CLOCK} for row in csv.DictReader(handle)
        ]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of an uninterrupted 3-epoch run."""
    out = tmp_path_factory.mktemp("straight")
    done = _run(_command(out))
    assert done.returncode == 0, done.stderr
    return out


def _epoch_seconds(straight: Path) -> float:
    """The shortest epoch of the uninterrupted run, as its log timed it (this machine, now)."""
    with open(straight / "logs" / "metrics.csv", newline="") as handle:
        return min(
            float(row["time/epoch_s"]) for row in csv.DictReader(handle) if row["time/epoch_s"]
        )


def _start_and_wait_for_first_checkpoint(out: Path, straight: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        _command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not (out / "last.ckpt").exists():  # epoch 0 is saved: epoch 1 is training
        assert process.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # A few steps into epoch 1 however fast this machine runs them (a fixed 0.2 s passed the
    # whole epoch once the steps got faster).
    time.sleep(0.3 * _epoch_seconds(straight))
    return process


@pytest.mark.slow
def test_a_run_killed_mid_epoch_and_resumed_logs_the_same_rows(
    tmp_path: Path, straight: Path
) -> None:
    process = _start_and_wait_for_first_checkpoint(tmp_path, straight)
    process.send_signal(signal.SIGKILL)
    assert process.wait(TIMEOUT_S) == -signal.SIGKILL
    assert not (tmp_path / "epoch001.ckpt").exists()  # killed inside epoch 1
    assert {row["epoch"] for row in _rows(tmp_path)} >= {"0"}  # epoch 0 is on disk

    resumed = _run(_command(tmp_path, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    expected = _rows(straight)
    assert len(expected) > 30 and _rows(tmp_path) == expected
    _assert_same_run(tmp_path / "last.ckpt", straight / "last.ckpt")


@pytest.mark.slow
def test_ctrl_c_saves_the_interrupted_step_and_resume_continues_it(
    tmp_path: Path, straight: Path
) -> None:
    process = _start_and_wait_for_first_checkpoint(tmp_path, straight)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == EXIT_INTERRUPTED, err
    last_line = err.strip().splitlines()[-1]
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    steps_per_epoch = 10  # 1 437 digits training images (90%), batch 128, last one dropped
    assert steps_per_epoch < saved["global_step"] < 2 * steps_per_epoch  # inside epoch 1
    assert last_line == (
        f"contrastkit: interrupted at epoch 1 step {saved['global_step']}; "
        f"{tmp_path / 'last.ckpt'} saved, continue with --resume"
    )
    assert "KeyboardInterrupt" not in err and "Traceback" not in err

    resumed = _run(_command(tmp_path, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(tmp_path / "last.ckpt", straight / "last.ckpt")  # bit for bit
    # Every per-step row matches; the interrupted epoch's means (train/loss_epoch, probe/loss)
    # average only the batches after the resume, as Lightning keeps no running sums.
    step_rows = [row for row in _rows(tmp_path) if row["train/loss_step"]]
    assert step_rows == [row for row in _rows(straight) if row["train/loss_step"]]


@pytest.mark.slow
def test_a_second_run_into_a_run_folder_is_refused_unless_overwrite(
    tmp_path: Path, straight: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.ckpt").write_bytes((straight / "last.ckpt").read_bytes())
    (out / "logs").mkdir()
    (out / "logs" / "metrics.csv").write_text("epoch,step\n7,7\n")
    args = [*ARGS, "--epochs", "1", "--out", str(out)]

    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{out} already holds a run" in err
    assert all(word in err for word in ("--resume", "--out", "--overwrite"))
    assert (out / "logs" / "metrics.csv").read_text() == "epoch,step\n7,7\n"  # untouched

    assert cli.main([*args, "--overwrite"]) == 0
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == 0  # the new 1-epoch run
    assert {row["epoch"] for row in _rows(out)} == {"0"}  # the old rows are gone
    assert not (out / "epoch002.ckpt").exists()


class _CtrlCAt(Callback):
    """Sends this process a SIGINT at the end of training batch `at` of epoch 0."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, module, outputs, batch, idx: int) -> None:
        if trainer.current_epoch == 0 and idx == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize(
    ("at", "epoch", "step", "position"),
    [
        (4, 0, 5, 5),  # inside the epoch: saved there, with the epoch's position
        (10, 1, 11, None),  # its last batch: the epoch's own checkpoint is the one to resume
    ],
)
def test_ctrl_c_saves_after_the_step_it_came_in(
    tmp_path: Path, at: int, epoch: int, step: int, position: int | None
) -> None:
    with pytest.raises(
        TrainingInterruptedError, match=f"interrupted at epoch {epoch} step {step};"
    ):
        pretrain(small_config(tmp_path, epochs=2), callbacks=[_CtrlCAt(at)])
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == step
    assert saved.get("epoch_position", {}).get("batches") == position
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
