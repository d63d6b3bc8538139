"""File writes that never leave a half-written result, and a lock for shared output folders."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import EXIT_FAILURE, ContrastkitError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save `obj` into memory, then write the bytes with :func:`atomic_write_bytes`."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text form of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class FolderBusyError(ContrastkitError, RuntimeError):
    """Another live process holds the folder's lock."""


class CheckpointWriteError(ContrastkitError, OSError):
    """A checkpoint could not be written (full disk, folder gone); the previous file is intact."""

    exit_code = EXIT_FAILURE


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold `folder/.lock` for the duration; refuse if a live process holds it.

    A lock left by a process that no longer exists (a crash, kill -9) is taken over. The lock
    appears with its process id already in it (written aside, then hard-linked into place), so a
    second command never reads an empty lock and mistakes it for a stale one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    mine = folder / f".lock.{os.getpid()}"
    mine.write_text(str(os.getpid()))
    try:
        _take(lock, mine, folder)
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _take(lock: Path, mine: Path, folder: Path) -> None:
    """Link `mine` to `lock` unless a live process holds `lock`; replace a stale one once."""
    for _ in range(2):
        try:
            os.link(mine, lock)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and process_alive(owner):
                raise FolderBusyError(
                    f"{folder} is in use by process {owner} (lock file {lock}); "
                    "wait for it to finish or use another --out"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        return
    raise FolderBusyError(f"could not take the lock {lock}")


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
