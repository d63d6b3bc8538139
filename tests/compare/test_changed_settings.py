"""`compare` reuses a finished entry only when its recorded settings equal the requested ones,
reruns changed ones into their own folders on request, and reports progress per entry."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from contrastkit.cli import main
from contrastkit.compare.progress import EntryProgress


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _args(out: Path, epochs: int) -> list[str]:
    return [
        "compare",
        "--losses",
        "nt_xent",
        "--epochs",
        str(epochs),
        "--batch-size",
        "128",
        "--protocol",
        "knn",
        "--out",
        str(out),
        "projector_hidden_dim=64",
        "projector_out_dim=32",
    ]


def _epochs_trained(folder: Path) -> int:
    return torch.load(folder / "last.ckpt", weights_only=True)["epoch"] + 1


@pytest.mark.slow
def test_changed_epochs_are_refused_then_rerun_into_their_own_folders(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grid"
    assert main(_args(out, 2)) == 0
    printed = capfd.readouterr()
    lines = [line for line in printed.out.splitlines() if "] entry " in line]
    assert [re.sub(r", elapsed.*", "", line) for line in lines] == [
        "[compare] entry 1 of 3 (nt_xent seed 0)",
        "[compare] entry 2 of 3 (random seed 0)",
        "[compare] entry 3 of 3 (supervised seed 0)",
    ]
    assert lines[0].endswith("elapsed 0s, ETA unknown")
    assert re.search(r"elapsed (\d+m)?\d+s, ETA (\d+m)?\d+s$", lines[2])
    for banner in ("GPU available", "TPU available", "Tip:", "`Trainer.fit` stopped"):
        assert banner not in printed.out + printed.err, banner
    before = (out / "results.json").read_text()

    assert main(_args(out, 3)) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert "2 finished or started entries made with other settings" in err
    assert "(differing keys: epochs;" in err and "epochs 2 -> 3" in err
    assert "--rerun-changed" in err
    assert (out / "results.json").read_text() == before  # nothing ran, nothing rewritten

    assert main([*_args(out, 3), "--rerun-changed"]) == 0
    capfd.readouterr()
    assert _epochs_trained(out / "nt_xent" / "seed0") == 2  # the first run is kept
    (changed,) = (out / "nt_xent").glob("seed0-*")
    assert _epochs_trained(changed) == 3
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["epochs"] == 3
    configs = results["pretrain_configs"]
    assert set(configs) == {f"nt_xent/{changed.name}", f"supervised/{next_name(out)}"}
    assert all(config["epochs"] == 3 for config in configs.values())
    folders = {record["row"]: record["folder"] for record in results["records"]}
    assert folders == {
        "nt_xent": f"nt_xent/{changed.name}",
        "random": "random/seed0",  # unchanged settings: reused
        "supervised": f"supervised/{next_name(out)}",
    }

    # The 3-epoch entries are found again without the flag; the 2-epoch ones still are too.
    assert main(_args(out, 3)) == 0
    assert main(_args(out, 2)) == 0


def next_name(out: Path) -> str:
    (folder,) = (out / "supervised").glob("seed0-*")
    return folder.name


def test_progress_estimates_the_rest_from_the_mean_entry_time() -> None:
    lines: list[str] = []
    now = [100.0]
    progress = EntryProgress(4, lines.append, clock=lambda: now[0])
    for seconds in (0, 30, 90):
        now[0] = 100.0 + seconds
        progress.start("x")
    now[0] = 100.0 + 3725
    progress.finish()
    assert lines == [
        "entry 1 of 4 (x), elapsed 0s, ETA unknown",
        "entry 2 of 4 (x), elapsed 30s, ETA 1m30s",  # 30 s per entry, 3 left
        "entry 3 of 4 (x), elapsed 1m30s, ETA 1m30s",  # 45 s per entry, 2 left
        "4 entries done in 1h02m",
    ]


def test_recorded_settings_decide_reuse_and_a_setting_newer_than_the_record_is_its_default(
    tmp_path: Path,
) -> None:
    from contrastkit.compare import CompareSpec
    from contrastkit.compare.grid import entries, entry_settings, resolve_entries
    from contrastkit.fileio import atomic_write_json
    from contrastkit.train.config import ConfigError

    spec = CompareSpec(losses=("nt_xent",), epochs=2, out=str(tmp_path))
    trained = next(e for e in entries(spec) if e.row == "nt_xent")
    recorded = entry_settings(spec, trained)
    del recorded["skip_nonfinite"]  # as if recorded before that setting existed
    atomic_write_json(trained.folder / "settings.json", recorded)
    assert [e.folder for e in resolve_entries(spec)] == [e.folder for e in entries(spec)]

    recorded["epochs"] = 5
    atomic_write_json(trained.folder / "settings.json", recorded)
    with pytest.raises(
        ConfigError, match=r"differing keys: epochs; e\.g\. nt_xent/seed0: epochs 5 -> 2"
    ):
        resolve_entries(spec)
    (changed,) = [e for e in resolve_entries(spec, rerun_changed=True) if e.row == "nt_xent"]
    assert changed.folder.parent == trained.folder.parent and changed.folder != trained.folder
