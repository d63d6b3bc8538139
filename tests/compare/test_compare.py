"""`compare`: a small grid writes every file, a rerun does no work, and the figures add up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from contrastkit.cli import main
from contrastkit.compare import CompareSpec, epochs_to_fraction, run_grid, summarize
from contrastkit.compare import grid as grid_module
from contrastkit.fileio import FolderBusyError, folder_lock


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Train on one thread: several times faster on a busy 2-core machine, and every grid of this
    module (the replay's included) then runs on the same thread count, which the bits depend on."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_grid(tmp_path_factory: pytest.TempPathFactory) -> CompareSpec:
    """Two losses and both baselines, one epoch each, on digits."""
    spec = CompareSpec(
        losses=("nt_xent", "vicreg"),
        epochs=1,
        batch_size=128,
        protocols=("knn", "logreg"),
        projector_hidden_dim=64,
        projector_out_dim=32,
        out=str(tmp_path_factory.mktemp("compare")),
    )
    run_grid(spec, log=lambda line: None)
    return spec


def test_a_two_loss_grid_writes_every_file(small_grid: CompareSpec) -> None:
    out = Path(small_grid.out)
    for name in ("results.md", "results.csv", "results.json", "spec.json"):
        assert (out / name).is_file(), name
    for plot in ("probe_accuracy.png", "top1.png", "uniformity_alignment.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG"), plot
    table = (out / "results.md").read_text()
    for row in ("nt_xent", "vicreg", "random", "supervised"):
        assert f"| {row} |" in table
    results = json.loads((out / "results.json").read_text())
    assert {r["row"] for r in results["rows"]} == {"nt_xent", "vicreg", "random", "supervised"}
    assert results["versions"]["torch"]
    for row in results["rows"]:
        top1, top5 = row["top1"][0], row["top5"][0]
        assert 0.0 <= top1 <= top5 <= 1.0
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("row,seeds,top1_mean,top1_std")
    assert len(csv_lines) == 5


def test_rerunning_the_same_grid_does_no_work(
    small_grid: CompareSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished entry was run again")

    monkeypatch.setattr("contrastkit.train.run.pretrain", refuse)
    monkeypatch.setattr("contrastkit.eval.evaluate", refuse)
    records, table = run_grid(small_grid, log=lambda line: None)
    assert len(records) == 4
    assert table.is_file()


def test_an_unfinished_entry_resumes_from_its_checkpoint(
    small_grid: CompareSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = next(e for e in grid_module.entries(small_grid) if e.row == "nt_xent")
    seen: list[bool] = []
    monkeypatch.setattr("contrastkit.train.run.pretrain", lambda config: seen.append(config.resume))
    monkeypatch.setattr("contrastkit.eval.evaluate", lambda *a, **k: {"top1": 1.0, "top5": 1.0})
    (entry.folder / "entry.json").unlink()
    (entry.folder / "pretrain.json").unlink()  # as if killed during training
    grid_module.run_entry(small_grid, entry, log=lambda line: None)
    assert seen == [True]


def test_epochs_to_ninety_percent_of_the_final_accuracy() -> None:
    assert epochs_to_fraction([0.1, 0.5, 0.85, 0.9, 1.0]) == 4
    assert epochs_to_fraction([0.95, 0.5, 1.0]) == 3  # the last crossing: it fell back
    assert epochs_to_fraction([]) is None


def test_seeds_are_summarised_as_mean_and_standard_deviation() -> None:
    spec = CompareSpec(losses=("dcl",), seeds=(0, 1), protocols=("knn",))
    metrics = {"uniformity": -2.0, "alignment": 0.5, "effective_rank": 10.0}

    def record(row: str, top1: float) -> dict:
        results = {"knn": {"top1": top1, "top5": 1.0}, "metrics": metrics}
        return {"row": row, "results": results, "probe_top1": [0.5, 1.0], "epoch_seconds": [1.0]}

    records = [record(r, t) for r in ("dcl", "random", "supervised") for t in (0.6, 0.8)]
    rows = {row["row"]: row for row in summarize(spec, records)}
    mean, std = rows["dcl"]["top1"]
    assert mean == pytest.approx(0.7)
    assert std == pytest.approx(0.1414213562)
    assert rows["dcl"]["epochs_to_90"] == (2.0, 0.0)


def test_a_second_command_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    with (
        folder_lock(tmp_path),
        pytest.raises(FolderBusyError, match=str(os.getpid())),
        folder_lock(tmp_path),
    ):
        pass
    assert not (tmp_path / ".lock").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text("999999999")  # no such process
    with folder_lock(tmp_path) as lock:
        assert lock.read_text() == str(os.getpid())


def _reproducible(rows: list[dict]) -> list[dict]:
    """The rows without the wall-clock figures (seconds per epoch and the note they decide)."""
    return [
        {
            **{k: v for k, v in row.items() if k != "epoch_seconds"},
            "notes": [n for n in row["notes"] if n != "fastest epoch"],
        }
        for row in rows
    ]


def test_results_json_records_seeds_versions_and_every_pretraining_config(
    small_grid: CompareSpec,
) -> None:
    results = json.loads((Path(small_grid.out) / "results.json").read_text())
    assert results["spec"]["seeds"] == [0]
    assert set(results["versions"]) >= {"contrastkit", "torch", "lightning", "python"}
    configs = results["pretrain_configs"]
    assert set(configs) == {"nt_xent/seed0", "vicreg/seed0", "supervised/seed0"}
    assert configs["vicreg/seed0"]["method"] == "vicreg"
    assert configs["nt_xent/seed0"]["seed"] == 0
    assert configs["nt_xent/seed0"]["weight_decay"] == 1e-4  # defaults resolved, not implied


@pytest.mark.slow
def test_replaying_results_json_reproduces_its_rows(
    small_grid: CompareSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = json.loads((Path(small_grid.out) / "results.json").read_text())
    recorded["versions"]["contrastkit"] = "0.0.0"  # as if made by another release
    source = tmp_path / "recorded.json"
    source.write_text(json.dumps(recorded))
    out = tmp_path / "replay"
    assert main(["compare", "--replay", str(source), "--out", str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "contrastkit 0.0.0 ->" in warnings[0]
    replayed = json.loads((out / "results.json").read_text())
    assert replayed["spec"] == {**recorded["spec"], "out": str(out)}
    assert replayed["pretrain_configs"].keys() == recorded["pretrain_configs"].keys()
    assert _reproducible(replayed["rows"]) == _reproducible(recorded["rows"])


@pytest.mark.parametrize("content", ["not json", '{"rows": []}', "[1, 2]"])
def test_replaying_a_file_that_is_not_compare_results_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    assert main(["compare", "--replay", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "compare results.json" in err
    assert not (tmp_path / "out").exists()


def test_a_second_compare_process_on_the_same_folder_exits_2_naming_the_first(
    tmp_path: Path,
) -> None:
    command = [
        *(sys.executable, "-m", "contrastkit.cli", "compare", "--losses", "nt_xent"),
        *("--epochs", "1", "--protocol", "knn", "--out", str(tmp_path)),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes share a small machine
    first = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / ".lock").exists():
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "the first compare never took its lock"
        time.sleep(0.05)
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    still_running = first.poll() is None
    _, first_err = first.communicate(timeout=300)

    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1
    assert str(tmp_path) in second.stderr and f"process {first.pid}" in second.stderr
    assert still_running  # the refusal came while the first held the folder
    assert first.returncode == 0, first_err
    results = json.loads((tmp_path / "results.json").read_text())
    assert {row["row"] for row in results["rows"]} == {"nt_xent", "random", "supervised"}
    assert not (tmp_path / ".lock").exists()


def test_the_untrained_baseline_gets_the_grids_backbone_options(tmp_path: Path) -> None:
    """A grid of a timm ViT sized by overrides (`backbone.<kwarg>`, parsed as pretraining parses
    them) evaluates its random baseline with the same options: without them the ViT would not
    run on 8 px digits."""
    from contrastkit.compare.protocols import entry_eval_options
    from contrastkit.eval import evaluate
    from contrastkit.eval.encoder import EvaluationError

    pytest.importorskip("timm")
    vit = "timm/vit_tiny_patch16_224"
    overrides = {
        "backbone.img_size": "8",
        "backbone.patch_size": 2,
        "backbone_options": {"depth": 2},
    }
    spec = CompareSpec(backbone=vit, overrides=overrides)
    options = entry_eval_options(spec, "random", "knn")
    sizes = {"backbone.img_size": 8, "backbone.patch_size": 2, "backbone.depth": 2}
    assert {k: options[k] for k in sizes} == sizes
    assert not any(k.startswith("backbone.") for k in entry_eval_options(spec, "dcl", "knn"))
    record = evaluate(
        f"random:{vit}", "knn", dataset="digits", out=str(tmp_path / "a.json"), **options
    )
    assert record["backbone_options"] == {"img_size": 8, "patch_size": 2, "depth": 2}
    bare = {k: v for k, v in options.items() if not k.startswith("backbone.")}
    with pytest.raises(EvaluationError, match="does not run on 8x8 images"):
        evaluate(f"random:{vit}", "knn", dataset="digits", out=str(tmp_path / "b.json"), **bare)
