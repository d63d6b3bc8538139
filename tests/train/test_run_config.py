"""The run folder records the resolved configuration: config.yaml and the loggers' hparams."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from contrastkit import cli
from contrastkit.train.compat import check_weights_fit
from contrastkit.train.config import ConfigError, build_config, load_preset
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


def test_a_resume_whose_weights_do_not_fit_is_one_line_and_keeps_the_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A setting outside the model check that shapes the weights (here the projector's depth)
    is refused before training, with one line naming a weight; config.yaml and the checkpoint
    stay as the run wrote them."""
    out = tmp_path / "run"
    common = ["--epochs", "1", "--out", str(out), "--progress", "false", "--loggers", "csv"]
    assert cli.main(["pretrain", *common]) == 0
    capsys.readouterr()
    before = {name: (out / name).read_bytes() for name in ("config.yaml", "last.ckpt")}
    assert cli.main(["pretrain", *common, "projector_layers=3", "--resume", "true"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"contrastkit: error: resume=true: {out / 'last.ckpt'} holds ")
    assert re.search(r"holds method\.projector\.\S+ of shape \(\d+, \d+\), this config", line)
    assert {name: (out / name).read_bytes() for name in before} == before


def test_weights_of_another_shape_are_named_with_both_shapes(tmp_path: Path) -> None:
    saved = tmp_path / "last.ckpt"
    torch.save({"state_dict": torch.nn.Conv2d(1, 4, 3).state_dict()}, saved)
    with pytest.raises(
        ConfigError,
        match=r"holds weight of shape \(4, 1, 3, 3\), this "
        r"configuration builds \(4, 1, 7, 7\)",
    ):
        check_weights_fit(torch.nn.Conv2d(1, 4, 7), saved)
    check_weights_fit(torch.nn.Conv2d(1, 4, 3), saved)  # the same shapes: no error
