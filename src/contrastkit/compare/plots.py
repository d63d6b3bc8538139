"""The comparison's charts: probe accuracy per epoch, final top-1, uniformity against alignment."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_bytes
from .grid import CompareSpec


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

    figure, axes = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab20")  # twelve rows: the default cycle repeats after ten
    for index, name in enumerate(spec.rows()):
        curves = [r["probe_top1"] for r in records if r["row"] == name and r["probe_top1"]]
        if curves:
            length = min(map(len, curves))
            mean = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
            x = range(1, length + 1)
            axes.plot(x, mean, label=name, marker=".", color=colours(index % 20))
    axes.set(xlabel="epoch", ylabel="online probe top-1 (held out)", title="Online probe")
    axes.legend(fontsize=8, ncol=2)
    paths.append(_save(figure, out / "probe_accuracy.png"))
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 4.5))
    named = [r for r in rows if r["top1"]]
    axes.bar(
        [r["row"] for r in named],
        [r["top1"][0] for r in named],
        yerr=[r["top1"][1] for r in named],
        color="tab:blue",
    )
    axes.set(ylabel=f"top-1 ({spec.protocols[0]})", title="Final top-1", ylim=(0, 1))
    axes.tick_params(axis="x", rotation=45)
    paths.append(_save(figure, out / "top1.png"))
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 5))
    for row in rows:
        if row["uniformity"] and row["alignment"]:
            x, y = row["uniformity"][0], row["alignment"][0]
            axes.scatter(x, y)
            axes.annotate(row["row"], (x, y), fontsize=8)
    axes.set(xlabel="uniformity (lower is more uniform)", ylabel="alignment (lower is better)")
    axes.set_title("Uniformity against alignment")
    paths.append(_save(figure, out / "uniformity_alignment.png"))
    plt.close(figure)
    return paths
