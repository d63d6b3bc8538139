"""The comparison grid: pretrain every loss (and two baselines) under one budget, evaluate each
the same way, and keep every finished piece on disk so a rerun only does what is missing."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_json, folder_lock
from ..train.config import ConfigError

DEFAULT_LOSSES = (
    "info_nce",
    "nt_xent",
    "dcl",
    "dcl_symmetric",
    "dhel",
    "kcl",
    "vicreg",
    "barlow_twins",
    "simsiam",
    "sigmoid",
)
BASELINES = ("random", "supervised")


@dataclass
class CompareSpec:
    """One comparison: which losses, on what, for how long, evaluated how.

    Every run shares one optimiser (LARS, scale-free per layer, so one learning rate suits losses
    of very different magnitudes) and one projector (`projector_hidden_dim`/`projector_out_dim`)
    so that the loss is the only difference; set both dims to None to keep each method's
    published head.
    `overrides` are further pretraining settings applied to every run. `protocols` may name
    evaluation presets (seed000, ...); `eval_options` are evaluation options, each given to
    every protocol that takes it.
    """

    losses: tuple[str, ...] = DEFAULT_LOSSES
    dataset: str = "digits"
    data_dir: str | None = None
    backbone: str = "small-cnn"
    epochs: int = 30
    batch_size: int = 256
    seeds: tuple[int, ...] = (0,)
    protocols: tuple[str, ...] = ("linear", "knn")
    optimizer: str = "lars"
    lr: float = 0.3
    projector_hidden_dim: int | None = 512
    projector_out_dim: int | None = 128
    out: str = "runs/compare"
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_options: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[str]:
        """Row names: each loss, then the baselines."""
        return [*self.losses, *BASELINES]


@dataclass
class Entry:
    """One (row, seed) cell of the grid and where it lives on disk."""

    row: str
    seed: int
    folder: Path

    @property
    def done_file(self) -> Path:
        return self.folder / "entry.json"


def entries(spec: CompareSpec) -> list[Entry]:
    out = Path(spec.out)
    return [
        Entry(row, seed, out / row / f"seed{seed}") for row in spec.rows() for seed in spec.seeds
    ]


def pretrain_values(spec: CompareSpec, entry: Entry) -> dict[str, Any]:
    """The pretraining configuration layer of one entry (the supervised baseline included)."""
    from ..methods import method_for_loss

    method = "supervised" if entry.row == "supervised" else method_for_loss(entry.row)
    values: dict[str, Any] = {
        "method": method,
        "dataset": spec.dataset,
        "data_dir": spec.data_dir,
        "backbone": spec.backbone,
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "optimizer": spec.optimizer,
        "lr": spec.lr,
        "seed": entry.seed,
        "out": str(entry.folder),
        "loggers": "csv",
        "progress": False,
    }
    if method != "supervised":
        values["loss"] = entry.row
        for key in ("projector_hidden_dim", "projector_out_dim"):
            if getattr(spec, key) is not None:
                values[key] = getattr(spec, key)
    values.update(spec.overrides)
    return values


def run_entry(spec: CompareSpec, entry: Entry, log: Callable[[str], None]) -> dict[str, Any]:
    """Pretrain (resuming a partial run) and evaluate one entry; reuse whatever is finished."""
    from ..eval import EvaluationError, evaluate
    from .protocols import entry_eval_options

    if entry.done_file.is_file():
        return json.loads(entry.done_file.read_text())
    checkpoint = _pretrained(spec, entry, log)
    record: dict[str, Any] = {"row": entry.row, "seed": entry.seed, "results": {}}
    for protocol in dict.fromkeys([*spec.protocols, "metrics"]):
        out = entry.folder / f"eval_{protocol}_backbone.json"
        log(f"{entry.row} seed {entry.seed}: evaluate {protocol}")
        try:
            record["results"][protocol] = evaluate(
                checkpoint,
                protocol,
                dataset=spec.dataset,
                data_dir=spec.data_dir,
                out=str(out),
                seed=entry.seed,
                **entry_eval_options(spec, entry.row, protocol),
            )
        except EvaluationError as error:  # a diverged encoder: record it, keep comparing
            log(f"{entry.row} seed {entry.seed}: {error}")
            record["error"] = str(error)
            break
    record.update(_training_curve(entry))
    atomic_write_json(entry.done_file, record)
    return record


def _pretrained(spec: CompareSpec, entry: Entry, log: Callable[[str], None]) -> str:
    """Checkpoint of the entry's encoder: `random:<backbone>`, or a (resumed) pretraining."""
    if entry.row == "random":
        return f"random:{spec.backbone}"
    from ..train.config import build_config
    from ..train.run import pretrain

    last = entry.folder / "last.ckpt"
    marker = entry.folder / "pretrain.json"
    if not marker.is_file():
        values = pretrain_values(spec, entry)
        values["resume"] = last.is_file()
        log(f"{entry.row} seed {entry.seed}: {'resume' if values['resume'] else 'pretrain'}")
        start = time.perf_counter()
        pretrain(build_config([values]))
        atomic_write_json(marker, {"seconds": time.perf_counter() - start, "config": values})
    return str(last)


def _training_curve(entry: Entry) -> dict[str, Any]:
    """Per-epoch online-probe accuracy and epoch time from the run's metrics.csv."""
    path = entry.folder / "logs" / "metrics.csv"
    if not path.is_file():
        return {"probe_top1": [], "epoch_seconds": []}
    probe: dict[int, float] = {}
    seconds: dict[int, float] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            epoch = int(row["epoch"])
            if row.get("val/top1"):
                probe[epoch] = float(row["val/top1"])
            if row.get("time/epoch_s"):
                seconds[epoch] = float(row["time/epoch_s"])
    return {
        "probe_top1": [probe[e] for e in sorted(probe)],
        "epoch_seconds": [seconds[e] for e in sorted(seconds)],
    }


def run_grid(
    spec: CompareSpec, log: Callable[[str], None] = print
) -> tuple[list[dict[str, Any]], Path]:
    """Run every missing entry under the output folder's lock, then write the reports."""
    from .report import write_reports

    out = Path(spec.out)
    with folder_lock(out):
        atomic_write_json(out / "spec.json", asdict(spec))
        records = [run_entry(spec, entry, log) for entry in entries(spec)]
        table = write_reports(spec, records)
    return records, table


def pretrain_configs(spec: CompareSpec) -> dict[str, dict[str, Any]]:
    """The full, defaults-resolved pretraining configuration of each trained entry, by folder."""
    from ..train.config import build_config

    return {
        f"{entry.row}/seed{entry.seed}": asdict(build_config([pretrain_values(spec, entry)]))
        for entry in entries(spec)
        if entry.row != "random"
    }


def _read_results(path: str | Path) -> dict[str, Any]:
    """A compare results.json, or ConfigError in one line saying why the file is not one."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read a compare results.json ({error})") from None
    if not isinstance(results, dict) or not isinstance(results.get("spec"), dict):
        raise ConfigError(f"{path}: not a compare results.json (no 'spec' object)")
    return results


def spec_from_results(path: str | Path, out: str | None = None) -> CompareSpec:
    """Rebuild the CompareSpec a results.json was produced from, writing to `out` if given."""
    recorded = _read_results(path)["spec"]
    known = {f.name for f in fields(CompareSpec)}
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown spec key(s) {', '.join(unknown)}")
    values = {
        key: tuple(value) if isinstance(value, list) else value for key, value in recorded.items()
    }
    if out is not None:
        values["out"] = out
    try:
        return CompareSpec(**values)
    except TypeError as error:
        raise ConfigError(f"{path}: bad spec ({error})") from None


def version_changes(path: str | Path) -> list[str]:
    """`name recorded -> running` for each version recorded in a results.json that differs now."""
    from .report import versions

    recorded = _read_results(path).get("versions") or {}
    running = versions()
    return [
        f"{name} {recorded[name]} -> {running.get(name)}"
        for name in sorted(recorded)
        if recorded[name] != running.get(name)
    ]


def parse_list(text: str, kind: Callable[[str], Any] = str) -> tuple[Any, ...]:
    """Comma-separated values, blanks dropped."""
    return tuple(kind(item.strip()) for item in text.split(",") if item.strip())
