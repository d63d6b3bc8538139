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
from .options import protocol_options, split_network
from .presets import PRESETS, resolve
from .progress import reporting
from .sweep import sweep_protocol

BACKBONE_PREFIX = "backbone."


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
    if spec.startswith(RANDOM_PREFIX):  # random:timm/<name> in runs/random-timm-<name>/
        folder = Path("runs") / f"random-{spec.removeprefix(RANDOM_PREFIX).replace('/', '-')}"
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
    features: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    out: str | None = None,
    seed: int = 0,
    holdout_fraction: float | None = None,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run `protocol` (one of PROTOCOLS, or a preset of PRESETS) on the encoder `spec` names;
    write and return its record.

    `features` default to the preset's, else the backbone's; `options` override the preset's.

    The record has `protocol`, `features`, `top1`, `top5` (fractions), the protocol's own
    figures, `checkpoint`, `dataset`, `n_train`, `n_test`, the settings used, and `out`, where
    it is written atomically as JSON (default: `default_out`); the metrics protocol puts its map
    beside it, with the suffix .png. `seed` fixes every random draw, and the initialisation of
    a `random:` backbone.

    The splits are checked before any work. `holdout_fraction` evaluates on the last fraction
    of each class of the training split (training on the rest), for data without a test split;
    `progress` reports feature extraction and classifier epochs on stderr. Options named
    `backbone.<kwarg>` are keyword arguments of a `random:timm/<name>` or
    `random:torchvision/<name>` backbone (as in pretraining).
    """
    preset = protocol if protocol in PRESETS else None
    backbone_options = _backbone_options(options)
    options = {k: v for k, v in options.items() if not k.startswith(BACKBONE_PREFIX)}
    protocol, features, options = resolve(protocol, features, options)
    settings = protocol_options(protocol, options)
    network, own = split_network(settings)
    if features not in FEATURES:
        raise EvaluationError(f"unknown features {features!r}; valid: {', '.join(FEATURES)}")
    if holdout_fraction is not None and not 0.0 < holdout_fraction < 1.0:
        raise EvaluationError(f"holdout_fraction={holdout_fraction}: must be in (0, 1)")
    splits = ("train",) if holdout_fraction is not None else ("train", "test")
    if dataset is not None:  # before a random backbone reads the data for its input size
        _check_splits(dataset, data_dir, splits)
    encoder = load_encoder(
        spec, dataset, data_dir, seed=seed, backbone_options=backbone_options, **network
    )
    _check_splits(encoder.dataset, encoder.data_dir, splits)
    encoder.holdout = holdout_fraction
    require_features(encoder, features)
    path = (
        Path(out).expanduser()
        if out
        else default_out(
            spec, preset or protocol, features, encoder.dataset, encoder.data_dir, holdout_fraction
        )
    )
    with torch.random.fork_rng(devices=[]), reporting(progress):
        torch.manual_seed(seed)
        figures = _run(protocol, encoder, features, path, seed, own)
    record = {
        "protocol": protocol,
        "preset": preset,
        "features": features,
        "top1": figures.pop("top1"),
        "top5": figures.pop("top5"),
        **figures,
        "checkpoint": encoder.spec,
        "method": encoder.method,
        "backbone": encoder.backbone.name,
        "backbone_options": backbone_options,
        "encoder": encoder.network,
        "dataset": encoder.dataset,
        "data_dir": str(Path(encoder.data_dir).expanduser().resolve())
        if encoder.data_dir
        else None,
        "split": "test"
        if holdout_fraction is None
        else f"last {holdout_fraction:g} of each class of train",
        "seed": seed,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "version": __version__,
        "out": str(path),
    }
    atomic_write_json(path, record)
    return record


def _backbone_options(options: dict[str, Any]) -> dict[str, Any]:
    """The `backbone.<kwarg>=value` options as {kwarg: value}, values read as pretraining reads
    them (numbers and booleans from text)."""
    from ..train.config import parse_value

    return {
        key.removeprefix(BACKBONE_PREFIX): parse_value(key, value)
        for key, value in options.items()
        if key.startswith(BACKBONE_PREFIX)
    }


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
    state = path.with_name(f".{path.stem}.state.pt")  # per-epoch state of trained heads
    if protocol == "linear":
        return linear_protocol(encoder, features, seed=seed, state_path=state, **settings)
    if protocol == "linear-sweep":
        return sweep_protocol(encoder, features, seed=seed, **settings)
    if protocol == "logreg":
        return logreg_protocol(encoder, features, seed=seed, **settings)
    if protocol == "knn":
        return knn_protocol(encoder, features, **settings)
    if protocol == "finetune":
        return finetune_protocol(encoder, features, seed=seed, state_path=state, **settings)
    return metrics_protocol(encoder, features, path.with_suffix(".png"), seed=seed, **settings)
