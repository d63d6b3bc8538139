"""One error path: every contrastkit error is one line with its exit code; argument errors
answer before torch loads; two spellings of one setting follow one order and may not conflict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastkit.cli import main
from contrastkit.data.datasets import CorruptImageError, DatasetNotFoundError
from contrastkit.errors import EXIT_BAD_INPUT, EXIT_FAILURE, ContrastkitError, DataError
from contrastkit.eval import EvaluationError
from contrastkit.fileio import CheckpointWriteError, FolderBusyError
from contrastkit.train.config import ConfigError, build_config
from contrastkit.train.errors import NonFiniteLossError

# Runs the command line in a fresh interpreter and reports its exit code, whether torch was
# imported, and whether the CLI module itself imports torch (it must not, or this proves nothing).
_PROBE = """
import sys
from contrastkit import cli
assert "torch" not in sys.modules, "importing the CLI loads torch"
code = cli.main(sys.argv[1:])
print(code, "torch" in sys.modules)
"""


def _probe(*args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr


HOLDOUT = ["--holdout-fraction", "1.5"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["pretrain", "--method", "simclear"], "unknown method 'simclear'"),
        (["pretrain", "--backbone", "resnet9"], "unknown backbone 'resnet9'"),
        (["pretrain", "--optimizer", "adamm"], "unknown optimizer 'adamm'"),
        (["pretrain", "--epochs", "-1"], "epochs=-1"),
        (["pretrain", "--lr", "fast"], "lr='fast'"),
        (["pretrain", "colour=red"], "unknown config key 'colour'"),
        (["pretrain", "--data-dir", "/no/such/folder"], "data_dir /no/such/folder"),
        (["pretrain", "temperature=0.2", "loss.temperature=0.3"], "set one value twice"),
        (["compare", "--epochs", "0"], "--epochs 0"),
        (["compare", "--losses", "nt_xen"], "unknown loss 'nt_xen'; did you mean nt_xent"),
        (["compare", "--seeds", "x"], "--seeds 'x'"),
        (["evaluate", "--checkpoint", "nope.ckpt", "--protocol", "knn"], "nope.ckpt"),
        (
            ["evaluate", "--checkpoint", "random:small-cnn", "--protocol", "knn", *HOLDOUT],
            "--holdout-fraction 1.5",
        ),
    ],
)
def test_argument_errors_answer_before_torch_loads(args: list[str], named: str) -> None:
    out, err = _probe(*args)
    assert out == f"{EXIT_BAD_INPUT} False"
    assert err.count("\n") == 1 and named in err


def test_the_probe_would_see_torch_load() -> None:
    """The check above can fail: a valid command that trains imports torch."""
    out, _ = _probe("losses")
    assert out.splitlines()[-1] == "0 True"


def test_every_error_class_shares_one_base_with_its_exit_code() -> None:
    for kind in (ConfigError, DatasetNotFoundError, CorruptImageError, DataError):
        assert issubclass(kind, ContrastkitError) and issubclass(kind, ValueError)
        assert kind("x").exit_code == EXIT_BAD_INPUT
    assert issubclass(EvaluationError, ContrastkitError)
    assert FolderBusyError("x").exit_code == EXIT_BAD_INPUT
    assert NonFiniteLossError("x").exit_code == EXIT_FAILURE
    assert CheckpointWriteError("x").exit_code == EXIT_FAILURE
    assert isinstance(CheckpointWriteError("x"), OSError)


# --- one order for the spellings of one value ----------------------------------------------


def test_a_later_layer_wins_whichever_spelling_it_uses() -> None:
    # preset < --options < key=value overrides, as the README says
    assert build_config([{"temperature": 0.2}, {"loss.temperature": "0.3"}]).temperature == 0.3
    assert build_config([{"loss.temperature": "0.3"}, {"temperature": "0.2"}]).temperature == 0.2
    preset = {"loss_options": {"temperature": 0.4}}
    assert build_config([preset, {"temperature": "0.2"}]).loss_kwargs()["temperature"] == 0.2


def test_the_command_line_trains_at_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def record(config: object) -> object:
        seen.append(config)
        raise ConfigError("stop here")

    monkeypatch.setattr("contrastkit.train.run.pretrain", record)
    assert main(["pretrain", "--temperature", "0.2", "loss.temperature=0.3"]) == EXIT_BAD_INPUT
    (config,) = seen
    assert config.temperature == 0.3 and config.loss_kwargs()["temperature"] == 0.3


@pytest.mark.parametrize(
    "layer",
    [
        {"temperature": "0.2", "loss.temperature": "0.3"},
        {"loss_options": {"temperature": 0.5}, "temperature": 0.2},
        {"loss_options": {"temperature": 0.5}, "loss.temperature": "0.3"},
    ],
)
def test_two_spellings_with_two_values_in_one_layer_are_an_error(layer: dict) -> None:
    spellings = [k if k != "loss_options" else "loss_options.temperature" for k in layer]
    with pytest.raises(ConfigError, match="set one value twice") as caught:
        build_config([layer])
    assert all(spelling in str(caught.value) for spelling in spellings)


def test_two_spellings_with_one_value_are_accepted() -> None:
    config = build_config([{"temperature": "0.3", "loss.temperature": "0.3"}])
    assert config.temperature == 0.3


# --- data errors: one line naming the file (a class missing from train/: tests/eval) ----------


def _image(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 128, dtype=np.uint8)).save(path)


def _pretrain_folder(root: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    args = ["pretrain", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1"]
    args += ["--batch-size", "2", "--out", str(tmp_path / "run"), "--loggers", "csv"]
    assert main([*args, "--progress", "false", "cache_dir=" + str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_images_of_different_sizes_are_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    for i in range(3):
        _image(root / "train" / "a" / f"{i}.png", 16)
    _image(root / "train" / "b" / "odd.png", 20)
    err = _pretrain_folder(root, capsys, tmp_path)
    assert "images differ in size" in err and "odd.png is 20x20" in err
