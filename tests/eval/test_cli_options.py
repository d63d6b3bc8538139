"""`contrastkit evaluate` options: --flags and key=value reach the protocol; bad ones exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.cli import main


def test_flags_and_key_value_pairs_reach_the_protocol(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "knn.json"
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--protocol", "knn",
                 "--out", str(out), "k=7", "metric=euclidean"])  # fmt: skip
    record = json.loads(out.read_text())
    assert code == 0 and (record["k"], record["metric"]) == (7, "euclidean")
    out = tmp_path / "linear.json"
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--protocol", "linear",
                 "--epochs", "2", "--selection", "best", "--optimizer", "adamw",
                 "--out", str(out), "select_by=top5"])  # fmt: skip
    record = json.loads(out.read_text())
    assert code == 0 and record["n_val"] == 143 and 1 <= record["selected_epoch"] <= 2
    assert (record["options"]["optimizer"], record["options"]["select_by"]) == ("adamw", "top5")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--protocol", "knn", "--encoder", "target"], "has no EMA target"),
        (["--protocol", "seed999"], "unknown protocol 'seed999'"),
        (["--protocol", "linear", "--lr", "fast"], "lr='fast': expected float"),
        (["--protocol", "knn", "metric"], "'metric': expected key=value"),
        (["--protocol", "knn", "--seed", "x"], "--seed 'x': expected a whole number"),
    ],
)
def test_bad_options_are_one_line_errors_with_exit_2(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, arguments: list, message: str
) -> None:
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "r.json"),
                 *arguments])  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1
