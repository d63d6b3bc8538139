"""The run folder records the resolved configuration: config.yaml and the loggers' hparams."""

from __future__ import annotations

from pathlib import Path

import yaml

from contrastkit.train.config import build_config, load_preset
from contrastkit.train.run import pretrain


def test_run_folder_holds_the_resolved_configuration(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = build_config(
        [
            {
                "epochs": 1,
                "batch_size": 512,
                "lr": 0.05,
                "loss.temperature": 0.2,
                "loggers": "csv,tensorboard",
                "progress": False,
                "out": str(out),
            }
        ]
    )
    pretrain(config)
    written = out / "config.yaml"
    assert sorted(p.name for p in out.glob("*.yaml")) == ["config.yaml"]  # no temp file left
    reread = build_config([load_preset(written)])
    assert reread == config  # every key, defaults included, reads back to the same run
    assert yaml.safe_load(written.read_text())["lr"] == 0.05
    for folder in ("logs", "tensorboard"):
        hparams = yaml.safe_load((out / folder / "hparams.yaml").read_text())
        assert hparams == config.to_dict(), folder
