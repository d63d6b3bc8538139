"""The comparison's results: one row per loss (and baseline), as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import platform
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_json, atomic_write_text
from .grid import BASELINES, CompareSpec, Entry, pretrain_configs
from .label_free import LABEL_FREE, label_free_correlations

PROBE_FRACTION = 0.9  # "epochs to reach 90% of the final online-probe accuracy"
UNSTABLE_FRACTION = 0.5  # a probe that falls below half its final accuracy after reaching 90%


def epochs_to_fraction(curve: list[float], fraction: float = PROBE_FRACTION) -> int | None:
    """The epoch (1-based) from which the probe accuracy stays at or above `fraction` of the
    final one: its last crossing, so a probe that got there early and fell back counts from
    when it came back for good."""
    if not curve:
        return None
    target = fraction * curve[-1]
    below = [i for i, value in enumerate(curve) if value < target]
    return below[-1] + 2 if below else 1


def unstable(curve: list[float], fraction: float = PROBE_FRACTION) -> bool:
    """Whether the probe reached `fraction` of its final accuracy, then fell below
    `UNSTABLE_FRACTION` of it (e.g. back to chance for some epochs)."""
    if not curve:
        return False
    target, floor = fraction * curve[-1], UNSTABLE_FRACTION * curve[-1]
    reached = next((i for i, value in enumerate(curve) if value >= target), len(curve))
    return any(value < floor for value in curve[reached:])


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(spec: CompareSpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate the seeds of each row: mean and standard deviation of every figure."""
    headline = spec.protocols[0]
    rows = []
    for name in spec.rows():
        every = [r for r in records if r["row"] == name]
        mine = [r for r in every if "error" not in r]
        figures: dict[str, Any] = {"row": name, "seeds": len(mine)}
        figures["failed"] = [r["error"] for r in every if "error" in r]
        figures["top1"] = _mean_std([r["results"][headline]["top1"] for r in mine])
        figures["top5"] = _mean_std([r["results"][headline]["top5"] for r in mine])
        for protocol in spec.protocols[1:]:
            figures[f"{protocol}_top1"] = _mean_std([r["results"][protocol]["top1"] for r in mine])
        metrics = [r["results"]["metrics"] for r in mine]
        for key in ("uniformity", "alignment", "effective_rank", *LABEL_FREE):
            figures[key] = _mean_std([m.get(key) for m in metrics])  # older files lack some
        seconds = [statistics.fmean(r["epoch_seconds"]) for r in mine if r["epoch_seconds"]]
        figures["epoch_seconds"] = _mean_std(seconds)
        to_90 = [epochs_to_fraction(r["probe_top1"]) for r in mine if r["probe_top1"]]
        figures["epochs_to_90"] = _mean_std(to_90)
        figures["unstable_seeds"] = sum(unstable(r["probe_top1"]) for r in mine)
        figures["probe_top1"] = _mean_std([r["probe_top1"][-1] for r in mine if r["probe_top1"]])
        rows.append(figures)
    _add_notes(rows)
    return rows


def _add_notes(rows: list[dict[str, Any]]) -> None:
    """Short, factual notes: best and fastest among the losses, and collapsed encoders."""
    losses = [r for r in rows if r["row"] not in BASELINES and r["top1"]]
    for row in rows:
        row["notes"] = []
    if losses:
        max(losses, key=lambda r: r["top1"][0])["notes"].append("best top-1")
        timed = [r for r in losses if r["epoch_seconds"]]
        if timed:
            min(timed, key=lambda r: r["epoch_seconds"][0])["notes"].append("fastest epoch")
        converged = [r for r in losses if r["epochs_to_90"]]
        if converged:
            min(converged, key=lambda r: r["epochs_to_90"][0])["notes"].append("fastest to 90%")
    for row in rows:
        if row["unstable_seeds"]:
            row["notes"].append(
                f"unstable probe in {row['unstable_seeds']} seed(s): fell below "
                f"{UNSTABLE_FRACTION:.0%} of its final accuracy after reaching 90%"
            )
        if row["failed"]:
            row["notes"].append(f"{len(row['failed'])} run(s) diverged: non-finite features")
        if row["effective_rank"] and row["effective_rank"][0] < 2.0:
            row["notes"].append(f"collapsed (effective rank {row['effective_rank'][0]:.1f})")
        if row["row"] == "random":
            row["notes"].append("untrained encoder")
        elif row["row"] == "supervised":
            row["notes"].append("cross-entropy with labels")


def _fmt(value: tuple[float, float] | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    mean, std = value
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def markdown_table(spec: CompareSpec, rows: list[dict[str, Any]]) -> str:
    """The seed's table (Loss | Top-1 | Top-5 | notes) with the extra figures between."""
    headline = spec.protocols[0]
    extra = [f"{p} top-1 (offline)" for p in spec.protocols[1:]]
    header = [
        "Loss",
        "Top-1 (online probe)",
        f"Top-1 ({headline}, offline)",
        f"Top-5 ({headline}, offline)",
        *extra,
        "s/epoch",
        "epochs to 90%",
        "uniformity",
        "alignment",
        "RankMe",
        "α-ReQ",
        "notes",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["row"],
            _fmt(row["probe_top1"]),
            _fmt(row["top1"]),
            _fmt(row["top5"]),
            *[_fmt(row[f"{p}_top1"]) for p in spec.protocols[1:]],
            _fmt(row["epoch_seconds"], 2),
            _fmt(row["epochs_to_90"], 1),
            _fmt(row["uniformity"], 2),
            _fmt(row["alignment"], 2),
            _fmt(row["rankme"], 1),
            _fmt(row["alpha_req"], 2),
            "; ".join(row["notes"]) or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv_text(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if k not in ("row", "seeds", "notes", "failed", "unstable_seeds")]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "seeds", *(f"{k}_{s}" for k in keys for s in ("mean", "std")), "notes"])
    for row in rows:
        cells: list[Any] = [row["row"], row["seeds"]]
        for key in keys:
            cells += list(row[key]) if row[key] else ["", ""]
        writer.writerow([*cells, "; ".join(row["notes"])])
    return buffer.getvalue()


def versions() -> dict[str, str]:
    """Versions (and the torch thread count) of what produced the figures, to reproduce them."""
    import lightning
    import torch

    from .. import __version__

    return {
        "contrastkit": __version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        # CPU reductions split their work by thread, so the last bits depend on the count.
        "torch_threads": str(torch.get_num_threads()),
    }


def correlation_line(label_free: dict[str, Any]) -> str:
    """One sentence: Spearman's ρ of each label-free metric with top-1 across the runs."""
    shown = ", ".join(
        f"{name} ρ = {'-' if label_free[key] is None else f'{label_free[key]:+.2f}'}"
        for key, name in (("rankme", "RankMe"), ("alpha_req", "α-ReQ"))
    )
    return (
        f"\nLabel-free selection: Spearman rank correlation with `{label_free['protocol']}` "
        f"top-1 across {label_free['runs']} runs (all but supervised): {shown}.\n"
    )


def write_reports(
    spec: CompareSpec, records: list[dict[str, Any]], chosen: list[Entry] | None = None
) -> Path:
    """Write results.md, results.csv, results.json and the plots; return the Markdown path.

    `chosen` are the entries that ran (default: the spec's own folders)."""
    from .plots import write_plots

    out = Path(spec.out)
    rows = summarize(spec, records)
    plots = write_plots(spec, records, rows)
    intro = (
        f"# Loss comparison: {spec.dataset}, {spec.backbone}, {spec.epochs} epochs, "
        f"batch {spec.batch_size}, seeds {', '.join(map(str, spec.seeds))}\n\n"
        f"Top-1/Top-5: `{spec.protocols[0]}` protocol on the test split (offline, after "
        "pretraining); online probe: the linear probe trained during pretraining, its final "
        "held-out top-1; uniformity and alignment of the test features (Wang & Isola); RankMe and "
        "α-ReQ of the probe split's features (label-free); epochs to 90%: the epoch from which the "
        "online probe stays at or above 90% of its final held-out accuracy.\n\n"
    )
    table = markdown_table(spec, rows)
    label_free = label_free_correlations(spec, records)
    figures = "".join(f"\n![{p.stem}]({p.name})\n" for p in plots)
    atomic_write_text(out / "results.md", intro + table + correlation_line(label_free) + figures)
    atomic_write_text(out / "results.csv", _csv_text(rows))
    atomic_write_json(
        out / "results.json",
        {
            "spec": asdict(spec),
            "versions": versions(),
            "pretrain_configs": pretrain_configs(spec, chosen),
            "rows": rows,
            "label_free": label_free,
            "records": records,
        },
    )
    return out / "results.md"
