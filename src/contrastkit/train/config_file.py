"""The run folder's `config.yaml`: the resolved configuration, readable and rerunnable."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..fileio import atomic_write_text
from .config import PretrainConfig

CONFIG_FILE = "config.yaml"


def config_yaml(config: PretrainConfig) -> str:
    """Every key of `config` (defaults included) as YAML that `--config` reads back."""
    import yaml

    header = (
        f"# The resolved configuration of this run (contrastkit {__version__}); "
        "`contrastkit pretrain --config <this file>` reads it back.\n"
    )
    return header + yaml.safe_dump(config.to_dict(), sort_keys=False)


def write_run_config(config: PretrainConfig) -> Path:
    """Write `config.yaml` into the run folder, atomically; return its path."""
    path = config.out_dir / CONFIG_FILE
    atomic_write_text(path, config_yaml(config))
    return path
