"""How a state dict fails to fit a module: one description shared by every loader of weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor


def weight_mismatch(
    state: Mapping[str, Any], expected: Mapping[str, Tensor], ignored: Iterable[str] = ()
) -> list[str]:
    """What keeps `state` from loading where `expected` (a module's state dict) is: entries of
    the wrong shape (or not tensors), missing and unexpected ones, each with an example; empty
    when it fits. Unexpected names starting with an `ignored` prefix are not counted."""
    prefixes = tuple(ignored)
    unexpected = sorted(k for k in state.keys() - expected.keys() if not k.startswith(prefixes))
    missing = sorted(expected.keys() - state.keys())
    misfit = sorted(
        name
        for name in expected.keys() & state.keys()
        if not isinstance(state[name], Tensor) or state[name].shape != expected[name].shape
    )
    problems = []
    if misfit:
        value = state[misfit[0]]
        found = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        problems.append(
            f"{len(misfit)} of wrong shape, e.g. {misfit[0]} is {found}, "
            f"expected {tuple(expected[misfit[0]].shape)}"
        )
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    return problems
