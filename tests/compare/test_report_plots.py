"""The demo report judges convergence on the probe's last crossing of 90% and draws charts
that show the differences: a fitted top-1 axis, a legend instead of overlapping labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from contrastkit.compare import CompareSpec, epochs_to_fraction, summarize
from contrastkit.compare.plots import geometry_figure, top1_figure, top1_limits
from contrastkit.compare.report import unstable

STEADY = [0.1 + 0.8 * min(1.0, e / 6) for e in range(1, 31)]  # 90% of 0.9 from epoch 6 on
# Reaches 90% at epoch 3, sits at chance for epochs 7-13, back above 90% from epoch 14.
DIPPED = [0.5, 0.8, 0.85, 0.9, 0.9, 0.9, *[0.1] * 7, *[0.92] * 17]


def _record(row: str, curve: list[float]) -> dict:
    metrics = {"uniformity": -2.0, "alignment": 0.5, "effective_rank": 10.0}
    results = {"knn": {"top1": 0.9, "top5": 1.0}, "metrics": metrics}
    return {"row": row, "results": results, "probe_top1": curve, "epoch_seconds": [1.0]}


def test_epochs_to_ninety_percent_is_the_last_crossing() -> None:
    assert len(DIPPED) == len(STEADY) == 30
    assert epochs_to_fraction(STEADY) == 6
    assert epochs_to_fraction(DIPPED) == 14
    assert epochs_to_fraction([0.9, 0.95, 1.0]) == 1
    assert unstable(DIPPED) and not unstable(STEADY)
    assert not unstable([0.95, 0.85, 1.0])  # a dip above half the final accuracy is noise


def test_a_probe_that_sat_at_chance_does_not_win_fastest_to_ninety_percent() -> None:
    spec = CompareSpec(losses=("sigmoid", "dcl"), seeds=(0,), protocols=("knn",))
    records = [_record("sigmoid", DIPPED), _record("dcl", STEADY)]
    records += [_record(b, STEADY) for b in ("random", "supervised")]
    rows = {row["row"]: row for row in summarize(spec, records)}
    assert rows["sigmoid"]["epochs_to_90"] == (14.0, 0.0)
    assert "fastest to 90%" in rows["dcl"]["notes"]
    assert "fastest to 90%" not in rows["sigmoid"]["notes"]
    assert any(note.startswith("unstable probe in 1 seed(s)") for note in rows["sigmoid"]["notes"])
    assert not any("unstable" in note for note in rows["dcl"]["notes"])


def _rows(top1: dict[str, tuple[float, float]]) -> list[dict]:
    return [
        {"row": name, "top1": value, "uniformity": (-2.0 - i * 0.01,), "alignment": (0.5,)}
        for i, (name, value) in enumerate(top1.items())
    ]


def test_top1_axis_fits_the_values_instead_of_starting_at_zero() -> None:
    rows = _rows({"dcl": (0.95, 0.0), "dhel": (0.953, 0.002), "sigmoid": (0.919, 0.01)})
    low, high = top1_limits(rows)
    assert 0.85 < low < 0.909 and 0.955 < high <= 1.0  # every error bar inside, with a margin
    spec = CompareSpec(losses=("dcl", "dhel", "sigmoid"), protocols=("linear",))
    figure = top1_figure(spec, rows)
    assert figure.axes[0].get_ylim() == pytest.approx((low, high))
    plt.close(figure)
    assert top1_limits(_rows({"a": (0.999, 0.01)}))[1] == 1.0  # never past 1
    assert top1_limits(_rows({"a": (0.0, 0.0), "b": (0.1, 0.0)}))[0] == 0.0  # nor below 0


def test_uniformity_alignment_names_rows_in_a_legend_not_overlapping_labels() -> None:
    names = [f"loss{i}" for i in range(12)]
    rows = _rows({name: (0.9, 0.0) for name in names})  # nearly on top of each other
    figure = geometry_figure(rows)
    axes = figure.axes[0]
    assert not axes.texts  # no annotations to overlap
    assert [t.get_text() for t in axes.get_legend().get_texts()] == names
    styles = {
        (tuple(c.get_facecolor()[0]), c.get_paths()[0].vertices.tobytes()) for c in axes.collections
    }
    assert len(styles) == 12  # each row its own colour and marker
    plt.close(figure)
