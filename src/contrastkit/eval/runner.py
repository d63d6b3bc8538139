"""`evaluate`: one protocol on one encoder, its results written as a JSON record."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data.datasets import canonical_name, check_split
from ..fileio import atomic_write_json
from .encoder import RANDOM_PREFIX, Encoder, load_encoder
from .errors import EvaluationError
from .features import FEATURES, require_features
from .finetune import finetune_protocol
from .knn import knn_protocol
from .linear import linear_protocol
from .logreg import logreg_protocol
from .metrics import metrics_protocol
from .progress import reporting

PROTOCOLS = ("linear", "logreg", "knn", "finetune", "metrics")

OPTIONS: dict[str, dict[str, int | float]] = {
    "linear": {"epochs": 100, "lr": 0.1, "batch_size": 256},
    "logreg": {"max_iter": 1000, "C": 1.0},
    "knn": {"k": 200, "temperature": 0.1},
    "finetune": {"epochs": 30, "lr": 0.01, "batch_size": 256},
    "metrics": {"k": 200, "temperature": 0.1, "max_samples": 4096},
}
"""Each protocol's options with their defaults."""


def protocol_options(protocol: str, options: dict[str, Any]) -> dict[str, int | float]:
    """The protocol's defaults updated with `options`, converted to the defaults' types.

    Text values (from a command line) are converted; None means "the default".
    """
    if protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    defaults = OPTIONS[protocol]
    settings = dict(defaults)
    for key, value in options.items():
        if key not in defaults:
            raise EvaluationError(
                f"unknown option {key!r} for protocol {protocol}; valid: {', '.join(defaults)}"
            )
        if value is not None:
            settings[key] = _convert(key, value, type(defaults[key]))
    return settings


def _convert(key: str, value: Any, kind: type) -> int | float:
    try:
        number = float(value)
        if kind is int and number != int(number):
            raise ValueError
        return int(number) if kind is int else number
    except (TypeError, ValueError, OverflowError):
        raise EvaluationError(f"{key}={value!r}: expected {kind.__name__}") from None


def default_out(
    spec: str,
    protocol: str,
    features: str,
    dataset: str = "digits",
    data_dir: str | None = None,
    holdout: float | None = None,
) -> Path:
    """`<checkpoint dir>/eval_<protocol>_<features>_<dataset>[-<hash>].json` (in
    `runs/random-<backbone>/` for random backbones), so evaluations on other data never
    overwrite each other: the hash names the data folder and the held-out fraction, if any."""
    if spec.startswith(RANDOM_PREFIX):
        folder = Path("runs") / f"random-{spec.removeprefix(RANDOM_PREFIX)}"
    else:
        folder = Path(spec).expanduser().parent
    name = f"eval_{protocol}_{features}_{canonical_name(dataset)}"
    if data_dir is not None or holdout is not None:
        where = str(Path(data_dir).expanduser().resolve()) if data_dir is not None else ""
        name += "-" + hashlib.sha256(f"{where}|{holdout}".encode()).hexdigest()[:8]
    return folder / f"{name}.json"


def evaluate(
    spec: str,
    protocol: str,
    features: str = "backbone",
    dataset: str | None = None,
    data_dir: str | None = None,
    out: str | None = None,
    seed: int = 0,
    holdout_fraction: float | None = None,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run `protocol` (one of PROTOCOLS) on the encoder `spec` names; write and return its record.

    The record has `protocol`, `features`, `top1`, `top5` (fractions), the protocol's own
    figures, `checkpoint`, `dataset`, `n_train`, `n_test`, the settings used, and `out`, where
    it is written atomically as JSON (default: `default_out`); the metrics protocol puts its map
    beside it, with the suffix .png. `seed` fixes every random draw, and the initialisation of
    a `random:` backbone.

    The splits are checked before any work. `holdout_fraction` evaluates on the last fraction
    of each class of the training split (training on the rest), for data without a test split;
    `progress` reports feature extraction and classifier epochs on stderr.
    """
    settings = protocol_options(protocol, options)
    if features not in FEATURES:
        raise EvaluationError(f"unknown features {features!r}; valid: {', '.join(FEATURES)}")
    if holdout_fraction is not None and not 0.0 < holdout_fraction < 1.0:
        raise EvaluationError(f"holdout_fraction={holdout_fraction}: must be in (0, 1)")
    splits = ("train",) if holdout_fraction is not None else ("train", "test")
    if dataset is not None:  # before a random backbone reads the data for its input size
        _check_splits(dataset, data_dir, splits)
    encoder = load_encoder(spec, dataset, data_dir, seed=seed)
    _check_splits(encoder.dataset, encoder.data_dir, splits)
    encoder.holdout = holdout_fraction
    require_features(encoder, features)
    path = (
        Path(out).expanduser()
        if out
        else default_out(
            spec, protocol, features, encoder.dataset, encoder.data_dir, holdout_fraction
        )
    )
    with torch.random.fork_rng(devices=[]), reporting(progress):
        torch.manual_seed(seed)
        figures = _run(protocol, encoder, features, path, seed, settings)
    record = {
        "protocol": protocol,
        "features": features,
        "top1": figures.pop("top1"),
        "top5": figures.pop("top5"),
        **figures,
        "checkpoint": encoder.spec,
        "method": encoder.method,
        "backbone": encoder.backbone.name,
        "dataset": encoder.dataset,
        "data_dir": str(Path(encoder.data_dir).expanduser().resolve())
        if encoder.data_dir
        else None,
        "split": "test"
        if holdout_fraction is None
        else f"last {holdout_fraction:g} of each class of train",
        "seed": seed,
        "options": settings,
        "version": __version__,
        "out": str(path),
    }
    atomic_write_json(path, record)
    return record


def _check_splits(dataset: str, data_dir: str | None, splits: tuple[str, ...]) -> None:
    """EvaluationError at once if a split is missing or names classes train/ lacks."""
    for split in splits:
        try:
            check_split(dataset, split, data_dir)
        except ValueError as error:
            hint = "; for data without one, evaluate on part of train/ with --holdout-fraction 0.1"
            raise EvaluationError(f"{error}{hint if split == 'test' else ''}") from None


def _run(
    protocol: str,
    encoder: Encoder,
    features: str,
    path: Path,
    seed: int,
    settings: dict[str, Any],
) -> dict[str, Any]:
    if protocol == "linear":
        return linear_protocol(encoder, features, seed=seed, **settings)
    if protocol == "logreg":
        return logreg_protocol(encoder, features, seed=seed, **settings)
    if protocol == "knn":
        return knn_protocol(encoder, features, **settings)
    if protocol == "finetune":
        return finetune_protocol(encoder, features, seed=seed, **settings)
    return metrics_protocol(encoder, features, path.with_suffix(".png"), seed=seed, **settings)
