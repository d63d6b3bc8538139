"""The evaluation arguments of one grid entry: the grid's options each protocol takes, and the
untrained baseline read through its backbone (it has no projector and no EMA target)."""

from __future__ import annotations

from typing import Any

from .grid import CompareSpec


def entry_eval_options(spec: CompareSpec, row: str, protocol: str) -> dict[str, Any]:
    """Keyword arguments for `evaluate` of `protocol` (or preset) on the grid's row `row`."""
    from ..eval.presets import options_for

    options = options_for(protocol, spec.eval_options)
    if row == "random":
        options.update(features="backbone", encoder="online")
        options.update({f"backbone.{k}": v for k, v in grid_backbone_options(spec).items()})
    return options


def grid_backbone_options(spec: CompareSpec) -> dict[str, Any]:
    """The backbone keyword arguments the grid's pretraining runs get from its overrides
    (`backbone.<kwarg>`, `backbone_options`), parsed as pretraining parses them, so that the
    untrained baseline is the same network (a ViT's image and patch size)."""
    from ..train.config import build_config

    layer = {
        key: value
        for key, value in spec.overrides.items()
        if key.replace("-", "_").startswith("backbone.")
        or key.replace("-", "_") == "backbone_options"
    }
    if not layer:
        return {}
    return dict(build_config([{"backbone": spec.backbone, **layer}]).backbone_options)
