"""Faults during pretraining: kill -9, damaged checkpoints, unwritable or full output folders.

A killed run resumed with `--resume` must end with exactly the weights of an uninterrupted one;
a damaged checkpoint must be skipped, with a warning, for the previous good one; a failed write
must leave the previous checkpoints intact and end the command with one line.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from contrastkit import cli, fileio
from contrastkit.fileio import CheckpointWriteError
from contrastkit.train import preflight
from contrastkit.train.config import ConfigError
from contrastkit.train.resume import checkpoint_problem, checkpoint_to_resume
from contrastkit.train.run import pretrain

from .small_run import small_config

EPOCHS = 3
ARGS = [
    "pretrain",
    "--dataset",
    "digits",
    "--epochs",
    str(EPOCHS),
    "--batch-size",
    "128",
    "--projector-hidden-dim",
    "64",
    "--projector-out-dim",
    "32",
    "--loggers",
    "csv",
    "--log-every-n-steps",
    "1",
    "--progress",
    "false",
]
TIMEOUT_S = 300

# Runs the command line with the N-th checkpoint write (argv[1]) killed by SIGKILL halfway
# through writing its temporary file. It replaces `open` in contrastkit.fileio only.
_KILL_MID_WRITE = """
import builtins, os, signal, sys
from contrastkit import cli, fileio

kill_at, writes = int(sys.argv[1]), 0

class HalfThenKill:
    def __init__(self, handle):
        self.handle = handle
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.handle.close()
    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

def dying_open(path, mode="r", *args, **kwargs):
    global writes
    handle = builtins.open(path, mode, *args, **kwargs)
    if ".ckpt.tmp" in os.fspath(path):
        writes += 1
        if writes == kill_at:
            return HalfThenKill(handle)
    return handle

fileio.open = dying_open
sys.exit(cli.main(sys.argv[2:]))
"""


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "contrastkit.cli", *ARGS, "--out", str(out), *extra]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)


def _final_state(path: Path) -> dict[str, Any]:
    """Weights, probe, epoch and step of a checkpoint: what must match bit for bit."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state: dict[str, Any] = dict(checkpoint["state_dict"])
    state.update({f"probe.{k}": v for k, v in checkpoint["probe"]["classifier"].items()})
    state["epoch"], state["global_step"] = checkpoint["epoch"], checkpoint["global_step"]
    return state


def _assert_same_run(resumed: Path, straight: Path) -> None:
    expected, actual = _final_state(straight), _final_state(resumed)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(actual[name], value, rtol=0, atol=0, msg=name)
        else:
            assert actual[name] == value, name


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of an uninterrupted run."""
    out = tmp_path_factory.mktemp("straight")
    done = _run(_command(out))
    assert done.returncode == 0, done.stderr
    return out


# --- kill -9 ------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_during_a_training_step_then_resume_gives_the_same_weights(
    tmp_path: Path, straight: Path
) -> None:
    process = subprocess.Popen(
        _command(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not (tmp_path / "last.ckpt").exists():  # epoch 0 is saved: epoch 1 is training
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(TIMEOUT_S) == -signal.SIGKILL
    assert not (tmp_path / "epoch001.ckpt").exists()  # killed before epoch 1 ended

    resumed = _run(_command(tmp_path, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(tmp_path / "last.ckpt", straight / "last.ckpt")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "intact"),
    [(2, "epoch000.ckpt"), (4, "last.ckpt")],  # writes: epoch000, last, epoch001, last, ...
)
def test_kill_during_a_checkpoint_write_then_resume_gives_the_same_weights(
    tmp_path: Path, straight: Path, kill_at: int, intact: str
) -> None:
    killed = _run(
        [sys.executable, "-c", _KILL_MID_WRITE, str(kill_at), *ARGS, "--out", str(tmp_path)]
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(tmp_path.glob(".*.ckpt.tmp*")), "the kill came before the temporary file"
    assert checkpoint_problem(tmp_path / intact) is None  # the previous checkpoint is whole
    assert torch.load(tmp_path / intact, weights_only=True)["epoch"] == 0

    resumed = _run(_command(tmp_path, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(tmp_path / "last.ckpt", straight / "last.ckpt")
    assert not list(tmp_path.glob(".*.ckpt.tmp*"))  # the dead writer's leftover is gone


# --- damaged checkpoints ------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the weights: torch.load alone would not notice
    path.write_bytes(bytes(data))


def _without_keys(path: Path) -> None:
    torch.save({"state_dict": {}}, path)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "contrastkit.train.resume"]


@pytest.fixture
def finished(tmp_path: Path, straight: Path) -> Path:
    """A copy of a finished run: last.ckpt, epoch001.ckpt and epoch002.ckpt."""
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "BadZipFile"),
        (_garbage, "BadZipFile"),
        (_flip_a_bit, "checksum mismatch"),
        (_without_keys, "missing epoch, global_step, optimizer_states, contrastkit"),
    ],
)
def test_a_damaged_last_checkpoint_falls_back_to_the_newest_epoch(
    finished: Path, caplog: pytest.LogCaptureFixture, damage: Any, reason: str
) -> None:
    last, newest = finished / "last.ckpt", finished / "epoch002.ckpt"
    damage(last)
    assert checkpoint_to_resume(finished) == newest
    (message,) = _warnings(caplog)
    assert message.startswith(f"{last} is unreadable (")
    assert message.endswith(f"); resuming from {newest}")
    assert reason in message and "\n" not in message


@pytest.mark.slow
def test_resume_past_two_damaged_checkpoints_gives_the_same_weights(
    finished: Path, straight: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _truncate(finished / "last.ckpt")
    _garbage(finished / "epoch002.ckpt")
    pretrain(small_config(finished, epochs=EPOCHS, resume=True))  # reruns epoch 2
    good = finished / "epoch001.ckpt"
    messages = _warnings(caplog)
    assert [m.split(" is unreadable")[0] for m in messages] == [
        str(finished / "last.ckpt"),
        str(finished / "epoch002.ckpt"),
    ]
    assert all(m.endswith(f"; resuming from {good}") for m in messages)
    _assert_same_run(finished / "last.ckpt", straight / "last.ckpt")


@pytest.mark.slow
def test_all_checkpoints_damaged_is_a_one_line_error(
    finished: Path, capsys: pytest.CaptureFixture
) -> None:
    for path in finished.glob("*.ckpt"):
        _truncate(path)
    with pytest.raises(ConfigError, match=f"no checkpoint in {finished} is readable"):
        checkpoint_to_resume(finished)
    assert cli.main([*ARGS, "--out", str(finished), "--resume"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("contrastkit: error: resume=true but no")


# --- unwritable and full output folders ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [("/dev/null/run", "Not a directory"), ("a-file", "File exists")],  # fail for root too
)
def test_an_unwritable_output_folder_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture, name: str, reason: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / name
    assert cli.main([*ARGS, "--out", str(out)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == f"contrastkit: error: cannot write to the output folder {out}: {reason}\n"


def test_too_little_free_space_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        preflight.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9, 1000)
    )
    assert cli.main([*ARGS, "--out", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"contrastkit: error: not enough disk space in {tmp_path}: 1,000 bytes")
    assert err.count("\n") == 1 and "the run needs about" in err
    assert not list(tmp_path.glob("*.ckpt"))


class _HalfThenFull:
    """A file handle that writes half of what it is given, then reports a full disk."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __enter__(self) -> _HalfThenFull:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> None:
        self.handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_write_is_one_line_and_keeps_the_last_good_one(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = 0

    def filling_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal writes
        handle = open(path, mode, *args, **kwargs)  # noqa: SIM115 - the caller closes it
        if ".ckpt.tmp" in os.fspath(path):
            writes += 1
            if writes == 4:  # epoch 1's last.ckpt, over epoch 0's
                return _HalfThenFull(handle)
        return handle

    monkeypatch.setattr(fileio, "open", filling_open, raising=False)
    assert cli.main([*ARGS, "--out", str(tmp_path)]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    line = f"contrastkit: error: cannot write checkpoint {tmp_path / 'last.ckpt'}: "
    assert line + "No space left on device\n" in err
    assert err.count("contrastkit: error") == 1 and "Traceback" not in err
    assert not list(tmp_path.glob(".*.ckpt.tmp*"))
    for name, epoch in [("last.ckpt", 0), ("epoch000.ckpt", 0), ("epoch001.ckpt", 1)]:
        assert checkpoint_problem(tmp_path / name) is None, name
        assert torch.load(tmp_path / name, weights_only=True)["epoch"] == epoch
    assert not (tmp_path / "epoch002.ckpt").exists()  # training stopped at the failure


def test_a_checkpoint_failure_is_reported_over_a_later_log_failure() -> None:
    try:
        try:
            raise CheckpointWriteError("cannot write checkpoint out/last.ckpt: No space left")
        except CheckpointWriteError:
            # as a logger's write in Lightning's cleanup after the failure would
            raise OSError(errno.ENOSPC, "No space left on device", "out/logs/metrics.csv")  # noqa: B904
    except OSError as error:
        assert cli._write_failure(error) == "cannot write checkpoint out/last.ckpt: No space left"
    assert cli._write_failure(OSError(errno.EIO, "I/O error", "f")) == "f: I/O error"


@pytest.mark.slow
def test_the_space_estimate_covers_the_checkpoints_a_run_writes(straight: Path) -> None:
    from contrastkit.train.run import build_module

    module = build_module(small_config(straight, epochs=EPOCHS))
    peak = 4 * (straight / "last.ckpt").stat().st_size  # last, two epochs, one being written
    assert peak <= preflight.checkpoint_bytes_needed(module) <= 4 * peak
