"""`evaluate` keeps results on different data apart, checks its splits before any work, can
evaluate on a held-out part of train/, and reports progress on long parts."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from contrastkit.cli import main
from contrastkit.eval import EvaluationError, evaluate
from contrastkit.eval.progress import Progress, reporting


def test_evaluations_on_other_data_never_overwrite_each_other(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(image_folder, other)
    records = [
        evaluate("random:small-cnn", "knn", k=5),
        evaluate("random:small-cnn", "knn", k=5, dataset="imagefolder", data_dir=str(image_folder)),
        evaluate("random:small-cnn", "knn", k=5, dataset="imagefolder", data_dir=str(other)),
    ]
    paths = [Path(record["out"]) for record in records]
    assert len(set(paths)) == 3
    assert paths[0].name == "eval_knn_backbone_digits.json"
    assert all(p.name.startswith("eval_knn_backbone_imagefolder-") for p in paths[1:])
    for path, record, data_dir in zip(paths, records, (None, image_folder, other), strict=True):
        written = json.loads(path.read_text())  # each file still holds its own evaluation
        assert written["dataset"] == record["dataset"]
        assert written["data_dir"] == (str(data_dir.resolve()) if data_dir else None)
        assert written["split"] == "test"
    assert records[0]["n_test"] != records[1]["n_test"]


def _train_only(image_folder: Path, tmp_path: Path) -> Path:
    root = tmp_path / "train_only"
    shutil.copytree(image_folder / "train", root / "train")
    return root


def test_a_folder_without_a_test_split_is_refused_before_any_work(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _train_only(image_folder, tmp_path)

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder and data were loaded before the split check")

    monkeypatch.setattr("contrastkit.eval.runner.load_encoder", no_work)
    with pytest.raises(EvaluationError) as error:
        evaluate("random:small-cnn", "knn", dataset="imagefolder", data_dir=str(root))
    message = str(error.value)
    assert "test split not found" in message and "--holdout-fraction" in message
    assert "\n" not in message


def test_holding_out_the_last_fraction_of_each_class_of_train(
    image_folder: Path, tmp_path: Path
) -> None:
    root = _train_only(image_folder, tmp_path)
    record = evaluate(
        "random:small-cnn",
        "knn",
        dataset="imagefolder",
        data_dir=str(root),
        out=str(tmp_path / "r.json"),
        holdout_fraction=0.25,
        k=5,
    )
    # 12 images per class: the last 3 of each are held out
    assert (record["n_train"], record["n_test"]) == (18, 6)
    assert record["top1"] == 1.0  # red against blue
    assert record["split"] == "last 0.25 of each class of train"


def test_a_class_missing_from_train_is_one_line_naming_the_class(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    shutil.copytree(image_folder, root)
    shutil.copytree(root / "test" / "red", root / "test" / "zebra")
    args = ["evaluate", "--checkpoint", "random:small-cnn", "--protocol", "knn"]
    assert main([*args, "--dataset", "imagefolder", "--data-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "zebra is missing from" in err


# --- progress --------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream: io.StringIO, enabled: bool = True) -> str:
    now = [0.0]
    with reporting(enabled):
        progress = Progress("epochs", 10, stream=stream, interval=10.0, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 4.0
        progress.update()
    progress.close()
    return stream.getvalue()


def test_a_log_file_gets_a_plain_line_every_interval() -> None:
    assert _run(io.StringIO()).splitlines() == [
        "epochs: 3/10 (30%), elapsed 12s",
        "epochs: 6/10 (60%), elapsed 24s",
        "epochs: 9/10 (90%), elapsed 36s",
        "epochs: done in 40s",
    ]


def test_a_terminal_gets_a_bar_redrawn_in_place() -> None:
    text = _run(_Terminal())
    assert text.count("\r") == 11 and text.count("\n") == 1
    assert "\repochs [" + "#" * 15 + "." * 15 + "] 5/10" in text
    assert text.endswith("\repochs: done in 40s\n")


def test_progress_is_silent_unless_reporting() -> None:
    assert _run(io.StringIO(), enabled=False) == ""


def test_the_command_reports_feature_extraction_and_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", "--checkpoint", "random:small-cnn", "--protocol", "linear"]
    assert main([*args, "--out", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err.splitlines()
    done = [line.split(": done")[0] for line in err if ": done in " in line]
    assert done == ["train features", "test features", "linear epochs"]
