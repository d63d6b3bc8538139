"""`evaluate`: one protocol on one encoder, its results written as a JSON record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import __version__
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
from .sweep import sweep_protocol


def default_out(spec: str, protocol: str, features: str) -> Path:
    """`<checkpoint dir>/eval_<protocol>_<features>.json`, `runs/random-<backbone>/...` for
    random backbones."""
    if spec.startswith(RANDOM_PREFIX):
        folder = Path("runs") / f"random-{spec.removeprefix(RANDOM_PREFIX)}"
    else:
        folder = Path(spec).expanduser().parent
    return folder / f"eval_{protocol}_{features}.json"


def evaluate(
    spec: str,
    protocol: str,
    features: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    out: str | None = None,
    seed: int = 0,
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
    """
    preset = protocol if protocol in PRESETS else None
    protocol, features, options = resolve(protocol, features, options)
    settings = protocol_options(protocol, options)
    network, own = split_network(settings)
    if features not in FEATURES:
        raise EvaluationError(f"unknown features {features!r}; valid: {', '.join(FEATURES)}")
    path = Path(out).expanduser() if out else default_out(spec, preset or protocol, features)
    encoder = load_encoder(spec, dataset, data_dir, seed=seed, **network)
    require_features(encoder, features)
    with torch.random.fork_rng(devices=[]):
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
        "encoder": encoder.network,
        "dataset": encoder.dataset,
        "seed": seed,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "version": __version__,
        "out": str(path),
    }
    atomic_write_json(path, record)
    return record


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
