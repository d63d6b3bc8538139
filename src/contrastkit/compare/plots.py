"""The comparison's charts: probe accuracy per epoch, final top-1, uniformity against alignment."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_bytes
from .grid import CompareSpec

MARKERS = "osD^vP*Xph<>"  # with tab20's colours, every row of a grid gets its own pair


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_plots(
    spec: CompareSpec, records: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> list[Path]:
    """Three PNGs in the output folder; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(spec.out)
    paths = []
    for figure, name in (
        (probe_figure(spec, records), "probe_accuracy.png"),
        (top1_figure(spec, rows), "top1.png"),
        (geometry_figure(rows), "uniformity_alignment.png"),
    ):
        paths.append(_save(figure, out / name))
        plt.close(figure)
    return paths


def _style(index: int) -> dict[str, Any]:
    """Row `index`'s colour and marker, the same in every chart."""
    import matplotlib.pyplot as plt

    return {"color": plt.get_cmap("tab20")(index % 20), "marker": MARKERS[index % len(MARKERS)]}


def probe_figure(spec: CompareSpec, records: list[dict[str, Any]]) -> Any:
    """Mean online-probe top-1 per epoch, one line per row."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, name in enumerate(spec.rows()):
        curves = [r["probe_top1"] for r in records if r["row"] == name and r["probe_top1"]]
        if curves:
            length = min(map(len, curves))
            mean = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
            axes.plot(range(1, length + 1), mean, label=name, markersize=3, **_style(index))
    axes.set(xlabel="epoch", ylabel="online probe top-1 (held out)", title="Online probe")
    axes.legend(fontsize=8, ncol=2)
    return figure


def top1_limits(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """A top-1 axis around the values (error bars included) with a margin, inside [0, 1]:
    starting it at 0 flattens differences of a few points into equal-looking bars."""
    lows = [r["top1"][0] - r["top1"][1] for r in rows if r["top1"]]
    highs = [r["top1"][0] + r["top1"][1] for r in rows if r["top1"]]
    if not lows:
        return 0.0, 1.0
    margin = max(0.1 * (max(highs) - min(lows)), 0.005)
    return max(0.0, min(lows) - margin), min(1.0, max(highs) + margin)


def top1_figure(spec: CompareSpec, rows: list[dict[str, Any]]) -> Any:
    """Final top-1 per row as points with their seed spread, on an axis fitted to the values
    (points, not bars, since the axis need not start at 0), each labelled with its value."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    named = [(i, r) for i, r in enumerate(rows) if r["top1"]]
    for position, (index, row) in enumerate(named):
        mean, std = row["top1"]
        axes.errorbar(position, mean, yerr=std, capsize=3, linestyle="none", **_style(index))
        axes.annotate(
            f"{mean:.3f}", (position, mean), xytext=(6, 0), textcoords="offset points", fontsize=7
        )
    axes.set_xticks(range(len(named)), [r["row"] for _, r in named], rotation=45, ha="right")
    axes.set(ylabel=f"top-1 ({spec.protocols[0]})", title="Final top-1", ylim=top1_limits(rows))
    axes.grid(axis="y", alpha=0.3)
    return figure


def geometry_figure(rows: list[dict[str, Any]]) -> Any:
    """Uniformity against alignment, one point per row, named in a legend beside the axes:
    rows often lie within a label's width of each other, where annotations overlap."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 5))
    for index, row in enumerate(rows):
        if row["uniformity"] and row["alignment"]:
            x, y = row["uniformity"][0], row["alignment"][0]
            axes.scatter(x, y, label=row["row"], s=40, **_style(index))
    axes.set(xlabel="uniformity (lower is more uniform)", ylabel="alignment (lower is better)")
    axes.set_title("Uniformity against alignment")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return figure
