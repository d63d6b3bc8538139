"""`evaluate` end to end: every protocol writes its JSON record, on checkpoints and random
backbones, on backbone and projector features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.eval import PROTOCOLS, EvaluationError, default_out, evaluate

REQUIRED = ("protocol", "features", "top1", "top5", "checkpoint", "dataset", "n_train", "n_test")
FAST = {
    "linear": {"epochs": 10},
    "linear-sweep": {"epochs": 10, "lrs": "0.1,1", "weight_decays": "0"},
    "logreg": {"max_iter": 200},
    "knn": {},
    "finetune": {"epochs": 2, "lr": 0.03},
    "metrics": {"max_samples": 150},
}
"""Shortened settings, so the whole folder runs in well under a minute."""


def _check_record(record: dict, out: Path, protocol: str, features: str) -> None:
    for key in REQUIRED:
        assert key in record, key
    assert (record["protocol"], record["features"]) == (protocol, features)
    assert 0.0 <= record["top1"] <= record["top5"] <= 1.0
    assert record["dataset"] == "digits" and record["n_test"] == 359
    assert Path(record["out"]).resolve() == out.resolve()
    assert json.loads(out.read_text()) == record
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("features", ["backbone", "projector"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_writes_its_record(
    checkpoint: Path, tmp_path: Path, protocol: str, features: str
) -> None:
    out = tmp_path / "results" / f"{protocol}.json"
    record = evaluate(str(checkpoint), protocol, features, out=str(out), **FAST[protocol])
    _check_record(record, out, protocol, features)
    assert record["checkpoint"] == str(checkpoint) and record["method"] == "simclr"
    assert record["top1"] > 0.3  # well above chance (0.1), even after one epoch
    held_out = protocol in ("finetune", "linear-sweep")  # their validation split
    assert record["n_train"] == (1295 if held_out else 1438)
    if held_out:
        assert 0.0 <= record["val_top1"] <= 1.0 and record["n_val"] == 143
    if protocol == "finetune":
        assert 1 <= record["selected_epoch"] <= 2
    if protocol == "metrics":
        assert record["alignment"] >= 0.0 and record["uniformity"] <= 0.0
        assert 1.0 <= record["effective_rank"] <= (256 if features == "backbone" else 32)
        png = Path(record["map_png"])
        assert png == out.with_suffix(".png")
        assert png.read_bytes().startswith(b"\x89PNG")


def test_the_default_output_lies_beside_the_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    local = tmp_path / "run" / "last.ckpt"
    local.parent.mkdir()
    local.write_bytes(checkpoint.read_bytes())
    evaluate(str(local), "knn", "projector")
    expected = tmp_path / "run" / "eval_knn_projector_digits.json"
    assert default_out(str(local), "knn", "projector") == expected
    _check_record(
        json.loads(expected.read_text()),
        expected,
        "knn",
        "projector",
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_random_backbones_are_evaluated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.chdir(tmp_path)
    record = evaluate("random:small-cnn", protocol, **FAST[protocol])
    out = tmp_path / "runs" / "random-small-cnn" / f"eval_{protocol}_backbone_digits.json"
    _check_record(record, out, protocol, "backbone")
    assert record["checkpoint"] == "random:small-cnn" and record["method"] is None


def test_random_backbones_have_no_projector(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="has no projector"):
        evaluate("random:small-cnn", "knn", "projector", out=str(tmp_path / "x.json"))
    assert not (tmp_path / "x.json").exists()


def test_an_image_folder_is_read_from_its_train_and_test_folders(
    image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "knn.json"
    record = evaluate(
        "random:small-cnn", "knn", dataset="imagefolder", data_dir=str(image_folder), out=str(out)
    )
    assert (record["n_train"], record["n_test"], record["dataset"]) == (24, 8, "imagefolder")
    assert record["top1"] == 1.0  # red against blue


def test_options_from_text_are_converted(checkpoint: Path, tmp_path: Path) -> None:
    record = evaluate(
        str(checkpoint), "knn", out=str(tmp_path / "k.json"), k="5", temperature="0.5"
    )
    assert (record["k"], record["temperature"]) == (5, 0.5)
    assert record["options"] == {
        "encoder": "online",
        "resize": 0,
        "crop": 0,
        "k": 5,
        "temperature": 0.5,
        "metric": "cosine",
    }


@pytest.mark.parametrize(
    ("protocol", "features", "options", "message"),
    [
        ("svm", "backbone", {}, "unknown protocol 'svm'"),
        ("knn", "head", {}, "unknown features 'head'"),
        ("knn", "backbone", {"epochs": 3}, "unknown option 'epochs' for protocol knn"),
        ("linear", "backbone", {"epochs": "2.5"}, "epochs='2.5': expected int"),
        ("linear", "backbone", {"optimizer": "lamb"}, "optimizer='lamb': valid: sgd, adamw"),
        ("linear", "backbone", {"augment": "maybe"}, "augment='maybe': expected bool"),
        ("linear", "backbone", {"lr": "0"}, "lr=0.0: must be > 0"),
        ("knn", "backbone", {"encoder": "ema"}, "encoder='ema': valid: online, target"),
        ("knn", "backbone", {"k": 0}, "k=0: must be >= 1"),
    ],
)
def test_bad_requests_are_one_line_errors(
    checkpoint: Path, tmp_path: Path, protocol: str, features: str, options: dict, message: str
) -> None:
    with pytest.raises(EvaluationError, match=message) as error:
        evaluate(str(checkpoint), protocol, features, out=str(tmp_path / "r.json"), **options)
    assert "\n" not in str(error.value)
