"""The `augment` key, `augment.<...>=value` overrides, `stem`, `stl10_split` and the
`val_fraction` default, through presets, options and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from contrastkit import cli
from contrastkit.train import run
from contrastkit.train.config import ConfigError, PretrainConfig, build_config, load_preset
from contrastkit.train.data import resolved_augmentation


def test_defaults_pretrain_on_the_whole_training_split_with_the_simclr_recipe() -> None:
    config = PretrainConfig()
    assert config.val_fraction == 0.0 and config.augment == {} and config.stem == "auto"
    assert config.stl10_split == "unlabeled+train"


def test_a_preset_recipe_and_overrides_resolve_view_by_view(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("dataset: stl10\naugment: seed004\nn_local: 4\n")
    overrides = {"augment.view2.solarize_p": "0.5", "augment.local.crop_size": "32"}
    config = build_config([load_preset(preset), overrides])
    views = resolved_augmentation(config)
    assert [v["solarize_p"] for v in views] == [0.2, 0.5, 0.0, 0.0, 0.0, 0.0]
    assert [v["crop_size"] for v in views] == [96, 96, 32, 32, 32, 32]
    assert config.augment == {
        "recipe": "seed004",
        "view2": {"solarize_p": 0.5},
        "local": {"crop_size": 32},
    }


def test_a_mapping_preset_and_a_later_whole_augment_replaces_earlier_ones() -> None:
    mapping = {"augment": {"recipe": "byol", "global": {"scale": [0.3, 1.0]}}}
    config = build_config([mapping, {"augment.blur_sigma": "0.5,1.5"}])
    views = resolved_augmentation(config)
    assert all(v["scale"] == [0.3, 1.0] and v["blur_sigma"] == [0.5, 1.5] for v in views)
    replaced = build_config([mapping, {"augment": "simclr"}])
    assert replaced.augment == {"recipe": "simclr"}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"augment": "simclr3"}, "'simclr3'"),
        ({"augment.global.blurp": "1"}, "'global.blurp'"),
        ({"augment.flip_p": "2"}, "flip_p must be in [0, 1]"),
        ({"augment.view5.blur_p": "1"}, "augment.view5: there are only 2 views"),
        ({"stem": "big"}, "unknown stem 'big'"),
        ({"stl10_split": "train"}, "unknown stl10_split 'train'"),
    ],
)
def test_bad_augmentation_values_are_one_line_config_errors(values: dict, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_config([values])
    assert named in str(error.value) and "\n" not in str(error.value)


def test_command_line_option_and_overrides_reach_the_config(monkeypatch) -> None:
    started: list[PretrainConfig] = []

    def fake(config: PretrainConfig, callbacks: object = ()) -> None:
        started.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(run, "pretrain", fake)
    args = ["pretrain", "--augment", "byol", "--stem", "imagenet", "augment.view1.blur_p=0.5"]
    with pytest.raises(SystemExit):
        cli.main(args)
    (config,) = started
    assert config.stem == "imagenet"
    assert [v["blur_p"] for v in resolved_augmentation(config)] == [0.5, 0.1]
