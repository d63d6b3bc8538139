"""Pick the checkpoint to resume from: the newest one that is whole and loads.

A checkpoint is a zip archive whose every record carries a CRC-32 (torch writes them, but
`torch.load` does not check them: a flipped bit in a weight loads silently). Verifying those
checksums catches truncation and bit rot; loading it with `weights_only=True` and finding the
keys Lightning restores from catches the rest.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

import torch

from ..fileio import process_alive
from .config import ConfigError

# What Lightning and PretrainModule read back when they resume a fit.
REQUIRED_KEYS = ("state_dict", "epoch", "global_step", "optimizer_states", "contrastkit")

_EPOCH_FILE = re.compile(r"epoch(\d+)\.ckpt")
# Temporary files of atomic writes (fileio.atomic_write_bytes): `.<name>.tmp<pid>`.
_TEMP_FILE = re.compile(r"\..+\.ckpt\.tmp(\d+)")
# Unconfigured, this prints the bare message on stderr: one line per skipped checkpoint.
_log = logging.getLogger(__name__)


def checkpoint_candidates(out_dir: Path) -> list[Path]:
    """`last.ckpt`, then the `epochNNN.ckpt` files, newest epoch first."""
    epochs = [p for p in out_dir.glob("epoch*.ckpt") if _EPOCH_FILE.fullmatch(p.name)]
    epochs.sort(key=lambda p: int(_EPOCH_FILE.fullmatch(p.name).group(1)), reverse=True)
    last = out_dir / "last.ckpt"
    return [last, *epochs] if last.is_file() else epochs


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` cannot be resumed from (damaged, not a checkpoint, keys missing), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
        if broken is not None:
            return f"checksum mismatch in record {broken}"
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # any failure to read means: do not resume from it
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0][:160] if lines else 'no details'}"
    if not isinstance(checkpoint, dict):
        return f"holds a {type(checkpoint).__name__}, not a checkpoint"
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    return f"missing {', '.join(missing)}" if missing else None


def checkpoint_to_resume(out_dir: Path) -> Path:
    """The newest good checkpoint in `out_dir`, logging a warning for each damaged one skipped.

    Also removes temporary files left by writes that a killed process never finished.
    """
    _remove_orphaned_temp_files(out_dir)
    candidates = checkpoint_candidates(out_dir)
    if not candidates:
        raise ConfigError(f"resume=true but there is no checkpoint at {out_dir / 'last.ckpt'}")
    skipped: list[tuple[Path, str]] = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            for bad, reason in skipped:
                _log.warning("%s is unreadable (%s); resuming from %s", bad, reason, path)
            return path
        skipped.append((path, problem))
    details = "; ".join(f"{path.name}: {reason}" for path, reason in skipped)
    raise ConfigError(f"resume=true but no checkpoint in {out_dir} is readable ({details})")


def _remove_orphaned_temp_files(out_dir: Path) -> None:
    """Delete `.<name>.ckpt.tmp<pid>` files whose writing process no longer exists."""
    for path in out_dir.glob(".*.ckpt.tmp*"):
        match = _TEMP_FILE.fullmatch(path.name)
        if match and not process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
