"""The backbone settings of a run: names (built-in, `timm/<name>`, `torchvision/<name>`), their
keyword arguments, and the local weights a run may start from (`init_from`)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..models.backbones import Backbone
from ..models.library_backbones import (
    LIBRARIES,
    BackboneNameError,
    check_library_backbone,
    split_name,
)
from ..models.weights import weight_mismatch
from .config import BACKBONE_NAMES, ConfigError


def check_backbone(name: str, options: Mapping[str, Any], init_from: str | None) -> None:
    """Raise ConfigError (one line) unless `name` and `options` build a backbone and `init_from`
    is an existing file. Library names are built on the meta device to check them."""
    if split_name(name) is not None:
        try:
            check_library_backbone(name, options)
        except BackboneNameError as error:
            raise ConfigError(str(error)) from None
    elif name not in BACKBONE_NAMES:
        close = difflib.get_close_matches(name, BACKBONE_NAMES, n=3, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}; " if close else ""
        libraries = ", ".join(f"{library}/<name>" for library in LIBRARIES)
        raise ConfigError(
            f"unknown backbone {name!r}; {hint}valid: {', '.join(BACKBONE_NAMES)}, {libraries}"
        )
    elif options:
        key = next(iter(options))
        raise ConfigError(
            f"backbone.{key}={options[key]!r}: backbone options apply to timm/<name> and "
            f"torchvision/<name> backbones, not to {name}"
        )
    if init_from is not None and not Path(init_from).expanduser().is_file():
        raise ConfigError(f"init_from={init_from!r}: no such file")


def load_initial_weights(backbone: Backbone, path: str) -> None:
    """Load a state dict of the backbone's body (a plain one, or a `contrastkit export` file)
    from `path`, after checking every name and shape; a removed classifier's weights in the
    file are ignored. Raises ConfigError naming the file and the first problem."""
    import torch

    try:
        state = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types (pickle, zip, EOF, runtime)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"init_from={path!r}: not a readable state dict ({first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"init_from={path!r}: expected a state dict of tensors")
    expected = backbone.body.state_dict()
    problems = weight_mismatch(state, expected, _classifier_prefixes(backbone))
    if problems:
        raise ConfigError(
            f"init_from={path!r}: weights do not fit backbone {backbone.name}: "
            + "; ".join(problems)
        )
    backbone.body.load_state_dict({k: state[k] for k in expected})


def _classifier_prefixes(backbone: Backbone) -> tuple[str, ...]:
    """Name prefixes of the classifier the backbone was built without (pretrained files have it)."""
    names = backbone.source.get("classifier")
    pretrained_cfg = getattr(backbone.body, "pretrained_cfg", None) or {}
    names = names or pretrained_cfg.get("classifier")
    if not names:
        return ()
    return tuple(f"{n}." for n in ([names] if isinstance(names, str) else names))
