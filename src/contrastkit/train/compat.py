"""Refuse to resume from a checkpoint made for another model before any training starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data.datasets import canonical_name
from ..methods.spec import METHODS
from .config import ConfigError, PretrainConfig

# The settings that decide the shapes and meaning of the saved weights.
MODEL_KEYS = (
    "method",
    "loss",
    "backbone",
    "dataset",
    "image_size",
    "projector_hidden_dim",
    "projector_out_dim",
    "predictor_hidden_dim",
)


def _model_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The MODEL_KEYS of a config dict, with the method's default loss and dataset spelling."""
    values = {key: config.get(key) for key in MODEL_KEYS}
    spec = METHODS.get(values["method"])
    if values["loss"] is None and spec is not None:
        values["loss"] = spec.default_loss
    if isinstance(values["dataset"], str):
        values["dataset"] = canonical_name(values["dataset"])
    return values


def check_resumable(config: PretrainConfig, checkpoint: Path) -> None:
    """Raise ConfigError naming both values of each model setting that differs between
    `config` and the one `checkpoint` was trained with."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    saved_config = saved.get("contrastkit", {}).get("config")
    if not isinstance(saved_config, dict):
        return  # not written by contrastkit: Lightning's own load reports what does not fit
    before, now = _model_settings(saved_config), _model_settings(config.to_dict())
    differ = [key for key in MODEL_KEYS if before[key] != now[key]]
    if differ:
        made = ", ".join(f"{key}={before[key]}" for key in differ)
        asked = ", ".join(f"{key}={now[key]}" for key in differ)
        raise ConfigError(
            f"resume=true: {checkpoint} was made with {made}, not {asked}; "
            f"valid: resume with {made}, or pick a new --out"
        )


def check_weights_fit(model: torch.nn.Module, checkpoint: Path) -> None:
    """Raise ConfigError when `checkpoint`'s weights do not fit `model` as Lightning's strict load
    needs: a setting outside MODEL_KEYS that shapes the weights (the stem, head depths, backbone
    options) changed. Names the first weight that differs, instead of a load traceback."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    weights = saved.get("state_dict")
    if not isinstance(weights, dict):
        return  # Lightning's own load reports a checkpoint without weights
    expected = model.state_dict()
    reshaped = [k for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    missing = [key for key in expected if key not in weights]
    extra = [key for key in weights if key not in expected]
    if reshaped:
        key = reshaped[0]
        problem = (
            f"holds {key} of shape {tuple(weights[key].shape)}, this configuration builds "
            f"{tuple(expected[key].shape)}"
        )
    elif missing:
        problem = f"lacks {len(missing)} weights this configuration builds (first: {missing[0]})"
    elif extra:
        problem = f"holds {len(extra)} weights this configuration does not build ({extra[0]}, ...)"
    else:
        return
    raise ConfigError(
        f"resume=true: {checkpoint} {problem}; valid: resume with the settings it was made "
        "with (stem, head and backbone options), or pick a new --out"
    )
