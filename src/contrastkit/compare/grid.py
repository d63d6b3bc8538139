"""The comparison grid: pretrain every loss (and two baselines) under one budget, evaluate each
the same way, and keep every finished piece on disk so a rerun only does what is missing."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import TrainingInterruptedError
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


# Settings that change where or how visibly an entry runs, never its results.
_NOT_SETTINGS = ("out", "resume", "overwrite", "progress")


def entry_settings(spec: CompareSpec, entry: Entry) -> dict[str, Any]:
    """What an entry's figures depend on: the resolved pretraining configuration, or for the
    random baseline its backbone, data and seed."""
    if entry.row == "random":
        keys = ("backbone", "dataset", "data_dir")
        return {**{key: getattr(spec, key) for key in keys}, "seed": entry.seed}
    from ..train.config import build_config

    config = asdict(build_config([pretrain_values(spec, entry)]))
    return {key: value for key, value in config.items() if key not in _NOT_SETTINGS}


def recorded_settings(folder: Path) -> dict[str, Any] | None:
    """The settings an entry folder was made with (None: nothing recorded there)."""
    path = folder / "settings.json"
    if path.is_file():
        return json.loads(path.read_text())
    marker = folder / "pretrain.json"  # folders from before settings.json: the raw values
    if marker.is_file():
        from ..train.config import build_config

        values = json.loads(marker.read_text())["config"]
        config = asdict(build_config([{k: v for k, v in values.items() if k != "resume"}]))
        return {key: value for key, value in config.items() if key not in _NOT_SETTINGS}
    return None


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple]:
    """`key: (recorded, wanted)` for each setting that differs. A key recorded before it
    existed (a newer version's setting) counts as its default."""
    from ..train.config import PretrainConfig

    defaults = json.loads(json.dumps(asdict(PretrainConfig())))
    recorded = {**{k: v for k, v in defaults.items() if k in wanted}, **recorded}
    wanted = json.loads(json.dumps(wanted))  # JSON turns tuples into lists
    keys = sorted(set(recorded) | set(wanted))
    return {k: (recorded.get(k), wanted.get(k)) for k in keys if recorded.get(k) != wanted.get(k)}


def _changed_folder(entry: Entry, settings: dict[str, Any]) -> Path:
    text = json.dumps(settings, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return entry.folder.with_name(f"{entry.folder.name}-{digest}")


def resolve_entries(spec: CompareSpec, rerun_changed: bool = False) -> list[Entry]:
    """Each entry in the folder whose recorded settings equal the requested ones.

    An entry made with other settings is refused (ConfigError naming the keys that differ),
    or with `rerun_changed` placed in its own folder `<row>/seed<N>-<settings hash>`.
    """
    resolved: list[Entry] = []
    changed: dict[str, dict[str, tuple]] = {}
    for entry in entries(spec):
        wanted = entry_settings(spec, entry)
        recorded = recorded_settings(entry.folder)
        differ = _differences(recorded, wanted) if recorded is not None else {}
        if not differ:
            resolved.append(entry)
            continue
        alternative = Entry(entry.row, entry.seed, _changed_folder(entry, wanted))
        earlier = recorded_settings(alternative.folder)
        if rerun_changed or (earlier is not None and not _differences(earlier, wanted)):
            resolved.append(alternative)
        else:
            changed[f"{entry.row}/seed{entry.seed}"] = differ
    if changed:
        keys = sorted({key for differ in changed.values() for key in differ})
        name, differ = next(iter(changed.items()))
        example = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in differ.items())
        raise ConfigError(
            f"{spec.out} holds {len(changed)} finished or started entries made with other "
            f"settings (differing keys: {', '.join(keys)}; e.g. {name}: {example}); rerun them "
            "into their own folders with --rerun-changed, or use another --out"
        )
    return resolved


def run_entry(spec: CompareSpec, entry: Entry, log: Callable[[str], None]) -> dict[str, Any]:
    """Pretrain (resuming a partial run) and evaluate one entry; reuse whatever is finished.

    `entry`'s folder must hold nothing or an entry with the same settings (`resolve_entries`).
    """
    from ..eval import EvaluationError, evaluate
    from .protocols import entry_eval_options

    if entry.done_file.is_file():
        record = json.loads(entry.done_file.read_text())
        missing = [p for p in spec.protocols if p not in record["results"]]
        if not missing or "error" in record:
            return record
        entry.done_file.unlink()  # a protocol was added: evaluate it, keep the others
    settings = entry.folder / "settings.json"
    if not settings.is_file():
        atomic_write_json(settings, entry_settings(spec, entry))
    checkpoint = _pretrained(spec, entry, log)
    record: dict[str, Any] = {
        "row": entry.row,
        "seed": entry.seed,
        "folder": str(entry.folder.relative_to(spec.out)),
        "results": {},
    }
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
        values["overwrite"] = not values["resume"]  # a run killed before its first checkpoint
        log(f"{entry.row} seed {entry.seed}: {'resume' if values['resume'] else 'pretrain'}")
        start = time.perf_counter()
        try:
            pretrain(build_config([values]))
        except TrainingInterruptedError as stop:  # compare resumes by itself
            raise TrainingInterruptedError(
                f"{entry.row} seed {entry.seed}: {str(stop).split('; ')[0]}; "
                "run the same compare command again to continue"
            ) from None
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
    spec: CompareSpec, log: Callable[[str], None] = print, rerun_changed: bool = False
) -> tuple[list[dict[str, Any]], Path]:
    """Run every missing entry under the output folder's lock, then write the reports.

    Entries recorded with other settings than `spec`'s are refused, or with `rerun_changed`
    rerun into their own folders (see `resolve_entries`); `log` gets a progress line per entry.
    """
    from .progress import EntryProgress, quiet_lightning
    from .report import write_reports

    out = Path(spec.out)
    with folder_lock(out):
        chosen = resolve_entries(spec, rerun_changed)
        atomic_write_json(out / "spec.json", asdict(spec))
        records = []
        with quiet_lightning():
            progress = EntryProgress(len(chosen), log)
            for entry in chosen:
                progress.start(f"{entry.row} seed {entry.seed}")
                records.append(run_entry(spec, entry, log))
        progress.finish()
        table = write_reports(spec, records, chosen)
    return records, table


def pretrain_configs(
    spec: CompareSpec, chosen: list[Entry] | None = None
) -> dict[str, dict[str, Any]]:
    """The full, defaults-resolved pretraining configuration of each trained entry, by folder
    (relative to the output folder: `<row>/seed<N>`, or the folder a changed entry ran in)."""
    from ..train.config import build_config

    out = Path(spec.out)
    return {
        str(entry.folder.relative_to(out)): asdict(build_config([pretrain_values(spec, entry)]))
        for entry in (entries(spec) if chosen is None else chosen)
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
