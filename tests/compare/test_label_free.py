"""compare's evaluation side: presets and eval.key=value options reach evaluate, the table keeps
online-probe and offline figures apart, and label-free metrics are rank-correlated with top-1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.cli import main
from contrastkit.compare import CompareSpec, markdown_table, summarize
from contrastkit.compare.grid import Entry, run_entry
from contrastkit.compare.label_free import label_free_correlations, spearman
from contrastkit.compare.report import correlation_line


def _naive_spearman(x: list[float], y: list[float]) -> float:
    """1 − 6 Σ d² / (n (n² − 1)) for values without ties."""
    rank = lambda v: [sorted(v).index(a) for a in v]  # noqa: E731
    d = [a - b for a, b in zip(rank(x), rank(y), strict=True)]
    n = len(x)
    return 1 - 6 * sum(e * e for e in d) / (n * (n * n - 1))


def test_spearman_equals_the_closed_form_and_refuses_too_little() -> None:
    x, y = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6], [0.2, 0.1, 0.5, 0.4, 0.9, 0.3]
    assert spearman(x, y) == pytest.approx(_naive_spearman(x, y))
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert spearman([1.0, 2.0], [1.0, 2.0]) is None
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def _record(row: str, seed: int, top1: float, rankme: float, alpha: float) -> dict:
    metrics = {"uniformity": -2.0, "alignment": 0.5, "effective_rank": 9.0, "rankme": rankme,
               "alpha_req": alpha}  # fmt: skip
    results = {"linear": {"top1": top1, "top5": 1.0}, "knn": {"top1": top1 / 2, "top5": 1.0},
               "metrics": metrics}  # fmt: skip
    return {"row": row, "seed": seed, "results": results, "probe_top1": [0.3, 0.45 + seed / 10],
            "epoch_seconds": [1.0]}  # fmt: skip


def test_label_free_metrics_are_correlated_with_linear_top1_across_the_grid() -> None:
    spec = CompareSpec(losses=("dcl", "vicreg"), seeds=(0, 1), protocols=("knn", "linear"))
    records = [
        _record("dcl", 0, 0.70, 30.0, 1.0),
        _record("dcl", 1, 0.72, 35.0, 0.9),
        _record("vicreg", 0, 0.60, 20.0, 1.5),
        _record("vicreg", 1, 0.50, 25.0, 1.2),
        _record("random", 0, 0.30, 10.0, 2.0),
        _record("supervised", 0, 0.95, 1.0, 9.0),  # uses labels: left out
    ]
    found = label_free_correlations(spec, records)
    top1 = [0.70, 0.72, 0.60, 0.50, 0.30]
    assert (found["protocol"], found["runs"]) == ("linear", 5)
    assert found["rankme"] == pytest.approx(_naive_spearman([30, 35, 20, 25, 10], top1))
    assert found["alpha_req"] == pytest.approx(_naive_spearman([1.0, 0.9, 1.5, 1.2, 2.0], top1))
    assert "RankMe ρ = +0.90" in correlation_line(found)


def test_the_table_shows_online_probe_and_offline_figures_in_separate_columns() -> None:
    spec = CompareSpec(losses=("dcl",), seeds=(0, 1), protocols=("linear", "knn"))
    records = [_record("dcl", 0, 0.7, 30.0, 1.0), _record("dcl", 1, 0.8, 32.0, 1.2)]
    records += [_record(r, 0, 0.4, 5.0, 2.0) for r in ("random", "supervised")]
    rows = summarize(spec, records)
    table = markdown_table(spec, rows)
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    assert header[1:5] == ["Top-1 (online probe)", "Top-1 (linear, offline)",
                           "Top-5 (linear, offline)", "knn top-1 (offline)"]  # fmt: skip
    dcl = next(line for line in table.splitlines() if line.startswith("| dcl |"))
    cells = [cell.strip() for cell in dcl.strip("|").split("|")]
    assert cells[1] == "0.500 ± 0.071"  # the probe's final figures, 0.45 and 0.55
    assert cells[2] == "0.750 ± 0.071"  # linear top-1, 0.7 and 0.8
    assert "RankMe" in header and cells[header.index("RankMe")] == "31.0 ± 1.4"


def test_presets_and_eval_options_reach_evaluate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def recording(checkpoint: str, protocol: str, **kwargs: object) -> dict:
        calls.append((protocol, kwargs))
        return {"top1": 0.5, "top5": 1.0, "rankme": 1.0, "alpha_req": 1.0}

    monkeypatch.setattr("contrastkit.eval.evaluate", recording)
    spec = CompareSpec(
        losses=("dcl",),
        protocols=("seed002-linear", "knn"),
        eval_options={"epochs": "3", "k": "5"},
        out=str(tmp_path),
    )
    run_entry(spec, Entry("random", 0, tmp_path / "random" / "seed0"), log=lambda _: None)
    options = {protocol: kwargs for protocol, kwargs in calls}
    assert list(options) == ["seed002-linear", "knn", "metrics"]
    assert options["seed002-linear"]["epochs"] == "3" and "k" not in options["seed002-linear"]
    assert options["knn"]["k"] == "5" and "epochs" not in options["knn"]
    assert options["metrics"]["k"] == "5"  # the metrics protocol takes k too
    # the untrained baseline has only a backbone, whatever the preset reads
    assert options["seed002-linear"]["features"] == "backbone"
    assert options["knn"]["encoder"] == "online"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--protocol", "seed999"], "unknown protocol 'seed999'"),
        (
            ["--protocol", "knn", "eval.epochs=3"],
            "eval.epochs: no protocol of knn, metrics takes it",
        ),
        (["--protocol", "seed000", "eval.selection=maybe"], "selection='maybe': valid: last"),
        (["--protocol", "knn", "eval.k"], "'eval.k': expected eval.key=value"),
    ],
)
def test_bad_protocols_and_eval_options_exit_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, arguments: list, message: str
) -> None:
    code = main(["compare", "--losses", "dcl", "--out", str(tmp_path / "c"), *arguments])
    error = capsys.readouterr().err
    assert code == 2 and message in error and not (tmp_path / "c").exists()


def test_an_old_results_json_without_eval_options_still_rebuilds_its_spec(tmp_path: Path) -> None:
    from contrastkit.compare.grid import spec_from_results

    old = {"spec": {"losses": ["dcl"], "protocols": ["linear", "knn"], "out": "x"}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(old))
    spec = spec_from_results(path, str(tmp_path / "new"))
    assert spec.eval_options == {} and spec.protocols == ("linear", "knn")
