"""`pretrain --help` explains every option, and `--config` finds shipped presets by name."""

from __future__ import annotations

import re
from dataclasses import MISSING
from pathlib import Path

import pytest

from contrastkit import cli, presets
from contrastkit.train.config import (
    FIELDS,
    NAMED_KEYS,
    ConfigError,
    build_config,
    choices,
    find_preset,
    load_preset,
)


def _option_entries(help_text: str) -> dict[str, str]:
    """Each `--option` of a help text with the words that follow it, whitespace collapsed."""
    entries = re.split(r"\n  (?=--)", help_text.split("\noptions:\n", 1)[1])
    return {entry.split()[0]: " ".join(entry.split()[1:]) for entry in entries}


def test_every_pretrain_option_has_help_choices_and_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["pretrain", "--help"])
    assert exit_.value.code == 0
    entries = _option_entries(capsys.readouterr().out)
    assert "preset name" in entries["--config"]
    for name, field in FIELDS.items():
        if name in ("loss_options", "backbone_options"):  # set as loss.<k>=, backbone.<k>=
            continue
        entry = entries.pop("--" + name.replace("_", "-"))
        words = entry.split("(default:")[0].split("(choices:")[0]
        metavar_dropped = words.split(" ", 1)[1] if " " in words else ""
        assert metavar_dropped.strip(), f"--{name} has no help"
        default = field.default_factory() if field.default is MISSING else field.default
        assert f"default: {default})" in entry, (name, entry)
        for choice in choices(name) if name in NAMED_KEYS else ():
            assert choice in entry.split("choices:")[1], (name, choice)
    assert set(entries) == {"-h,", "--config", "--print-config"}  # no option left without a field


def test_dataset_option_lists_the_dataset_names(capsys: pytest.CaptureFixture[str]) -> None:
    from contrastkit.data.datasets import DATASET_NAMES

    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    entry = _option_entries(capsys.readouterr().out)["--dataset"]
    assert entry.split("choices: ")[1].split(";")[0].split(", ") == list(DATASET_NAMES)


def test_config_finds_a_shipped_preset_by_name() -> None:
    shipped = Path(presets.__file__).parent / "seed000/dhel.yaml"
    assert find_preset("seed000/dhel") == shipped
    assert find_preset("seed000/dhel.yaml") == shipped
    assert load_preset("seed000/dhel")["loss"] == "dhel"
    assert "seed000/dhel" in presets.preset_names()


def test_config_finds_presets_in_subfolders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "presets"
    (folder / "seed000").mkdir(parents=True)
    (folder / "seed000" / "dhel.yaml").write_text("loss: dhel\nepochs: 7\n")
    (tmp_path / "outside.yaml").write_text("epochs: 1\n")
    monkeypatch.setattr(presets, "PRESETS_DIR", folder)
    monkeypatch.chdir(folder / "seed000")  # not found as a file from here
    assert load_preset("seed000/dhel") == {"loss": "dhel", "epochs": 7}
    assert presets.preset_names() == ["seed000/dhel"]
    with pytest.raises(ConfigError, match="seed000/dhel"):
        load_preset("seed000/dhell")
    with pytest.raises(ConfigError, match="not found"):  # no way out of the presets folder
        load_preset("../outside")


def test_a_file_path_wins_over_a_preset_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "seed000").mkdir()
    (tmp_path / "seed000/dhel.yaml").write_text("epochs: 3\n")
    monkeypatch.chdir(tmp_path)
    assert load_preset("seed000/dhel.yaml") == {"epochs": 3}
    assert load_preset("seed000/dhel")["loss"] == "dhel"  # no file of that exact name


def test_unknown_preset_is_one_line_naming_the_closest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["pretrain", "--config", "seed000/dhell"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "'seed000/dhell'" in err and "seed000/dhel" in err.split("closest presets:")[1]


def test_gpu_presets_say_precision_auto_and_resolve_to_32_on_a_cpu() -> None:
    from contrastkit.train.run import _precision

    for name in presets.preset_names():
        raw = load_preset(name)
        assert raw.get("precision", "auto") == "auto", name
    config = build_config([load_preset("seed000/dhel"), {"accelerator": "cpu"}])
    assert config.precision == "auto"
    assert _precision(config) == "32"
    config.accelerator = "gpu"
    assert _precision(config) == "bf16"
    config.precision = "16"
    assert _precision(config) == "16"
