"""Checks of the output folder before training, so a run does not fail hours in at a write."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from torch import nn

from .config import ConfigError

# At the peak of a checkpoint, the folder holds last.ckpt, the two newest epoch files and the
# next one being written.
_CHECKPOINT_FILES = 4
# A checkpoint holds the weights, up to two optimiser moments per weight (Adam), and the probe.
_CHECKPOINT_PER_WEIGHT_BYTE = 4
_LOG_BYTES = 1 << 20


# What a run leaves in its folder; --overwrite removes these and nothing else.
_RUN_FILES = ("last.ckpt", "epoch*.ckpt", "logs", "tensorboard", "wandb")


def check_run_folder(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train into a folder holding another run's checkpoints or logs, unless resuming;
    with `overwrite`, remove them first, so nothing of the old run mixes with the new one.

    Only the first process checks: under DDP the other ranks start (as copies of the command)
    once the first one is already training into the folder.
    """
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))  # GROUP_RANK: torchrun
    first = os.environ.get("LOCAL_RANK", "0") == "0" and node == "0"
    if resume or not first or not out_dir.is_dir():
        return
    found = sorted(p for pattern in _RUN_FILES for p in out_dir.glob(pattern))
    if not found:
        return
    if not overwrite:
        raise ConfigError(
            f"{out_dir} already holds a run ({found[0].name}); continue it with --resume, "
            "choose another --out, or replace it with --overwrite"
        )
    for path in found:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def check_output_folder(out_dir: Path) -> None:
    """Create `out_dir` and write and delete a small file in it; ConfigError if that fails."""
    probe = out_dir / f".write-probe-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"contrastkit")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"cannot write to the output folder {out_dir}: {error.strerror or error}"
        ) from None


def checkpoint_bytes_needed(model: nn.Module) -> int:
    """A generous estimate of the disk space a run's checkpoints and logs take at their peak."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return _CHECKPOINT_FILES * _CHECKPOINT_PER_WEIGHT_BYTE * weights + _LOG_BYTES


def check_free_space(out_dir: Path, model: nn.Module) -> None:
    """ConfigError if `out_dir`'s file system lacks room for the run's checkpoints and logs.

    Checkpoints already in the folder are counted as free: the run replaces them.
    """
    existing = sum(p.stat().st_size for p in out_dir.glob("*.ckpt"))
    needed = checkpoint_bytes_needed(model) - existing
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise ConfigError(
            f"not enough disk space in {out_dir}: {free:,} bytes free, the run needs about "
            f"{needed:,} bytes for checkpoints and logs; free some space or choose another --out"
        )
