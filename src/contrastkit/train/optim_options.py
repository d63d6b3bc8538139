"""Checks of the gradient-clipping and weight-decay-schedule options. Torch-free, so a bad value
answers at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import PretrainConfig

CLIP_MODES = ("global", "per_parameter")


def check_clip_and_weight_decay(config: PretrainConfig) -> None:
    """ConfigError (one line) for a clip norm that is not > 0, an unknown clip mode, or a
    negative final weight decay."""
    from .config import ConfigError

    if config.grad_clip is not None and not config.grad_clip > 0:
        raise ConfigError(f"grad_clip={config.grad_clip}: must be > 0 (None: no clipping)")
    if config.grad_clip_mode not in CLIP_MODES:
        raise ConfigError(
            f"unknown grad_clip_mode {config.grad_clip_mode!r}; valid: {', '.join(CLIP_MODES)}"
        )
    if config.weight_decay_final is not None and config.weight_decay_final < 0:
        raise ConfigError(
            f"weight_decay_final={config.weight_decay_final}: must be >= 0 (None: constant)"
        )
