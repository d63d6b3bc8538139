"""The small, fast pretraining configuration the trainer tests share."""

from __future__ import annotations

from pathlib import Path

from contrastkit.train.config import PretrainConfig, build_config


def small_config(out: Path, **values: object) -> PretrainConfig:
    """SimCLR on digits, 1 epoch, batch 128, a 64→32 projector, CSV logs of every step, unless
    `values` differ."""
    defaults = {
        "dataset": "digits",
        "epochs": 1,
        "batch_size": 128,
        "projector_hidden_dim": 64,
        "projector_out_dim": 32,
        "loggers": "csv",
        "log_every_n_steps": 1,  # a loss row per step, for the tests that compare curves
        "progress": False,
        "out": str(out),
    }
    return build_config([{**defaults, **values}])
