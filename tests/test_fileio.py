"""Atomic writes: a write that fails part-way leaves the previous file whole and no stray file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contrastkit import fileio


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "results.json"
    fileio.atomic_write_json(path, {"top1": 0.5})

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, full_disk)
    with pytest.raises(OSError, match="No space left"):
        fileio.atomic_write_json(path, {"top1": 0.9})
    assert json.loads(path.read_text()) == {"top1": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_the_lock_names_its_owner_and_leaves_no_helper_file(tmp_path: Path) -> None:
    with fileio.folder_lock(tmp_path) as lock:
        assert lock.read_text() == str(os.getpid())
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # no helper file left
