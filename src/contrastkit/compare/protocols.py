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
    return options
