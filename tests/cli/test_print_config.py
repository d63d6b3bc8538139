"""`pretrain --print-config`: the resolved configuration as JSON, every key, nothing loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.cli import main
from contrastkit.train.config import FIELDS


def _printed(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["pretrain", "--print-config", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_key_is_printed_with_the_methods_defaults_resolved(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Data is never read (the folder does not exist); heads and loss options are resolved."""
    values = _printed(
        capsys,
        "--method",
        "relic",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(tmp_path / "absent"),
        "loss.max_scale=5",
        "projector_bias=false",
        "schedule=constant",
    )
    assert set(FIELDS) <= set(values)
    assert values["loss"] == "sigmoid" and values["schedule"] == "constant"
    assert values["loss_options"]["max_scale"] == 5
    assert values["loss_options"]["penalty_filtering"] is False  # the loss's own default
    assert (values["projector_layers"], values["projector_hidden_dim"]) == (2, 512)
    assert (values["projector_out_dim"], values["projector_bias"]) == (64, False)
    assert values["projector_out_bn"] == "none"


def test_temperature_is_the_losss_default_unless_given(capsys: pytest.CaptureFixture[str]) -> None:
    assert _printed(capsys, "--loss", "dhel")["temperature"] == 0.3
    assert _printed(capsys, "--loss", "dhel", "temperature=0.07")["temperature"] == 0.07


def test_a_bad_value_still_fails_before_printing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--print-config", "schedule=linear"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "'linear'" in captured.err


def test_the_augmentation_is_printed_per_view_and_reads_back_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each view's settings, resolved from the recipe and the dataset; fed back as `augment`,
    they give the same views."""
    from contrastkit.train.config import build_config
    from contrastkit.train.data import resolved_augmentation

    values = _printed(capsys, "--dataset", "cifar10", "augment.view2.solarize_p=0.2")
    views = values["augment"]
    assert list(views) == ["view1", "view2"]
    assert views["view1"]["solarize_p"] == 0.0 and views["view2"]["solarize_p"] == 0.2
    assert views["view1"]["mean"] == [0.4914, 0.4822, 0.4465]  # the dataset's statistics
    again = build_config([{"dataset": "cifar10", "augment": views}])
    original = build_config([{"dataset": "cifar10", "augment.view2.solarize_p": 0.2}])
    assert resolved_augmentation(again) == resolved_augmentation(original)
