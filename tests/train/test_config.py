"""Configuration: layers override in order, and every bad value is a one-line error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from contrastkit.train.config import (
    FIELDS,
    ConfigError,
    PretrainConfig,
    build_config,
    load_preset,
    parse_override,
)

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "contrastkit" / "presets"


def test_defaults_train_simclr_on_digits_with_the_small_cnn() -> None:
    config = build_config([])
    assert (config.method, config.dataset, config.backbone) == ("simclr", "digits", "small-cnn")
    assert config.loss is None and config.precision == "32"


def test_later_layers_override_earlier_ones() -> None:
    config = build_config(
        [{"epochs": 5, "lr": 0.1}, {"epochs": "7"}, dict([parse_override("lr=0.05")])]
    )
    assert config.epochs == 7
    assert config.lr == 0.05


def test_loss_options_and_the_temperature_shortcut_reach_the_loss() -> None:
    config = build_config([{"loss": "dclw", "loss.sigma": "0.3", "temperature": "0.2"}])
    assert config.loss_kwargs() == {"sigma": 0.3, "temperature": 0.2}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"method": "swav_v9"}, "'swav_v9'"),
        ({"loss": "hinge"}, "'hinge'"),
        ({"backbone": "vit"}, "'vit'"),
        ({"dataset": "mnist3d"}, "'mnist3d'"),
        ({"optimizer": "rmsprop"}, "'rmsprop'"),
        ({"colour": "red"}, "'colour'"),
        ({"batch_size": "1"}, "batch_size=1"),
        ({"temperature": "0"}, "temperature=0.0"),
        ({"temperature": "-0.5"}, "temperature=-0.5"),
        ({"lr": "-1"}, "lr=-1.0"),
        ({"epochs": "-3"}, "epochs=-3"),
        ({"epochs": "two"}, "epochs='two'"),
        ({"n_global": "1"}, "views=1"),
        ({"precision": "8"}, "'8'"),
        ({"resume": "maybe"}, "resume='maybe'"),
        ({"lr": "nan"}, "lr='nan'"),
        ({"loss.tau": "0.1"}, "'tau'"),
        ({"method": "vicreg", "temperature": "0.1"}, "temperature=0.1"),
    ],
)
def test_bad_values_are_one_line_errors_that_name_them(values: dict, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_config([values])
    message = str(error.value)
    assert named in message
    assert "\n" not in message


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid: method, loss"):
        build_config([{"metod": "simclr"}])


def test_override_needs_key_and_value() -> None:
    with pytest.raises(ConfigError, match="'epochs'"):
        parse_override("epochs")


def test_presets_cover_the_seeds() -> None:
    """One preset per seed run, in a folder per seed (checked key by key in test_seed_presets)."""
    names = {str(p.relative_to(CONFIGS).with_suffix("")) for p in CONFIGS.glob("*/*.yaml")}
    for loss in ("info_nce", "nt_xent", "dcl", "dcl_symmetric", "dhel", "vicreg"):
        assert f"seed000/{loss}" in names
    for method in ("simclr", "simclr_multicrop", "barlow_twins", "simsiam", "supcon"):
        assert f"seed002/{method}" in names
    assert {"seed003/stl10_simclr", "seed003/cifar10_supcon"} <= names
    assert {"seed004/stl10_relic", "seed004/cifar10_relic"} <= names


def test_missing_or_malformed_preset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_preset(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_preset(bad)


def test_every_field_has_a_command_line_option() -> None:
    from contrastkit.cli import build_parser

    names = [name for name in FIELDS if name not in ("loss_options", "backbone_options")]
    options = [f"--{name.replace('_', '-')}=x" for name in names]
    args = build_parser().parse_args(["pretrain", *options])
    assert all(getattr(args, name) == "x" for name in names)
    assert PretrainConfig().out == "runs/pretrain"


def test_temperature_has_one_spelling_in_the_resolved_config() -> None:
    """loss.temperature and loss_options' temperature land in `temperature`, later layers win."""
    config = build_config([{"loss_options": {"temperature": 0.3}}, {"loss.temperature": "0.2"}])
    assert config.temperature == 0.2 and "temperature" not in config.loss_options
    assert config.loss_kwargs() == {"temperature": 0.2}
    assert build_config([{"loss_options": {"temperature": 0.3}}]).temperature == 0.3
