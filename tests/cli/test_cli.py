"""The console script: fast answers, the loss listing, and exit code 2 for bad input."""

from __future__ import annotations

import inspect
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from contrastkit import cli, losses


def test_losses_lists_every_loss_with_its_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["losses"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == set(losses.LOSS_FUNCTIONS)
    assert "temperature=0.5" in lines["nt_xent"]
    assert "temperature=0.3" in lines["dhel"]
    assert "sigma=0.5" in lines["dclw"]
    assert "lambd=0.005" in lines["barlow_twins"]


def test_registry_names_match_function_names() -> None:
    for name, fn in losses.LOSS_FUNCTIONS.items():
        assert fn.__name__ == name
        assert "gather" in inspect.signature(fn).parameters


def test_unknown_command_is_a_one_line_error_with_exit_code_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contrastkit.cli", "pretrian"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pretrian" in result.stderr.splitlines()[-1]


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from contrastkit import cli; cli.build_parser(); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def _contrastkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command in a fresh folder (unless `cwd`), so its default run folder starts empty."""
    return subprocess.run(
        [sys.executable, "-m", "contrastkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd or tempfile.mkdtemp(prefix="contrastkit-cli-"),
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--method", "swav_v9"], "'swav_v9'"),
        (["--loss", "hinge"], "'hinge'"),
        (["--backbone", "vit"], "'vit'"),
        (["--dataset", "mnist3d"], "'mnist3d'"),
        (["--batch-size", "1"], "batch_size=1"),
        (["--temperature", "0"], "temperature=0.0"),
        (["--lr", "-0.1"], "lr=-0.1"),
        (["--epochs", "-2"], "epochs=-2"),
        (["--n-global", "1"], "views=1"),
        (["colour=red"], "'colour'"),
        (["--resume", "--out", "/nonexistent/run"], "no checkpoint at /nonexistent/run/last.ckpt"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "/nonexistent"),
    ],
)
def test_bad_pretrain_input_is_one_line_on_stderr_with_exit_code_2(
    args: list[str], named: str
) -> None:
    result = _contrastkit("pretrain", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert result.stdout == ""


@pytest.mark.slow
def test_pretrain_writes_a_checkpoint_and_says_where(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _contrastkit("pretrain", "--epochs", "1", "--out", str(out), "--progress", "false")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"checkpoint: {out / 'last.ckpt'}" in result.stdout
    assert (out / "last.ckpt").is_file()
    assert (out / "logs" / "metrics.csv").is_file()
    assert any((out / "tensorboard").iterdir())
    assert f"csv logs: {out / 'logs'}" in result.stdout


@pytest.mark.parametrize(
    ("args", "named", "valid"),
    [
        (["--method", "swav_v9"], "'swav_v9'", "valid: simclr"),
        (["--loss", "hinge"], "'hinge'", "valid: nt_xent"),
        (["--backbone", "vit"], "'vit'", "valid: resnet18, resnet50"),
        (["--dataset", "mnist3d"], "'mnist3d'", "valid: digits"),
        (["colour=red"], "'colour'", "valid: method"),
        (["--batch-size", "1"], "batch_size=1", ">= 2"),
        (["--batch-size", "5000"], "batch_size=5000", "valid: batch_size <= 1438"),
        (["--temperature", "-1"], "temperature=-1.0", "> 0"),
        (["--lr", "-0.1"], "lr=-0.1", ">= 0"),
        (["--lr", "inf"], "lr='inf'", "finite number"),
        (["--epochs", "-2"], "epochs=-2", ">= 1"),
        (["--epochs", "1e400"], "epochs='1e400'", "expected int"),
        (["--micro-batch-size", "0"], "micro_batch_size=0", ">= 2"),
        (["--micro-batch-size", "-1"], "micro_batch_size=-1", ">= 2"),
        (["--micro-batch-size", "x"], "micro_batch_size='x'", "expected int"),
        (["--micro-batch-size", "2", "--batch-size", "5"], "micro_batch_size=2", "batch_size=5"),
        (["loss.chunk_size=0"], "chunk_size", "got 0"),
        (["--loss", "dcl", "loss.temperature=-1"], "temperature=-1.0", "> 0"),  # one value
        (["--n-global", "1"], "views=1", "at least 2"),
        (["--accelerator", "abacus"], "'abacus'", "valid: auto, cpu"),
        (["augment.view3.blur_p=1"], "augment.view3", "there are only 2 views"),
        (["--epochs", "1\nTraceback"], "epochs='1\\nTraceback'", "expected int"),
        (["--metod", "simclr"], "--metod", "did you mean --method?"),
        (["--bogus"], "--bogus", "valid: -h, --help, --config, --print-config, --method"),
    ],
)
def test_bad_input_names_the_value_and_what_would_be_valid(
    args: list[str], named: str, valid: str
) -> None:
    result = _contrastkit("pretrain", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(("contrastkit: error: ", "contrastkit pretrain: error: "))
    assert named in lines[0] and valid in lines[0]


def _image_folder(root: Path, corrupt: str | None = None) -> Path:
    """train/ and test/ with two classes of four 8x8 PNGs; `corrupt` names a file to damage."""
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / split / cls / f"{i}.png")
    if corrupt:
        (root / corrupt).write_bytes(b"not a png")
    return root


def test_missing_empty_or_corrupt_data_folder_is_one_line_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = _image_folder(tmp_path / "bad", corrupt="train/b/2.png")
    cases = [
        (tmp_path / "absent", f"data_dir {tmp_path / 'absent'}: no such folder"),  # before torch
        (empty, f"train split not found at {empty / 'train'}"),
        (bad, f"cannot decode image {bad / 'train' / 'b' / '2.png'}"),
    ]
    for folder, named in cases:
        result = _contrastkit(
            "pretrain", "--dataset", "imagefolder", "--data-dir", str(folder), "--workers", "0"
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and named in lines[0], result.stderr
        valid = "point --data-dir at a folder with train/<class>/"
        assert valid in lines[0] or folder != empty  # the folder or corrupt file is named


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--method", "vicreg"], "method=simclr, loss=nt_xent, not method=vicreg, loss=vicreg"),
        (["--backbone", "resnet18"], "backbone=small-cnn, not backbone=resnet18"),
        (["--method", "simclr", "--loss", "dcl"], "loss=nt_xent, not loss=dcl"),
    ],
)
def test_resuming_a_checkpoint_of_another_model_is_refused_before_training(
    tmp_path: Path, change: list[str], named: str
) -> None:
    import torch

    from contrastkit.train.config import PretrainConfig

    out = tmp_path / "run"
    out.mkdir()
    checkpoint = {
        "state_dict": {},
        "epoch": 0,
        "global_step": 10,
        "optimizer_states": [],
        "contrastkit": {"config": PretrainConfig(out=str(out)).to_dict()},
    }
    torch.save(checkpoint, out / "last.ckpt")
    result = _contrastkit("pretrain", "--resume", "--out", str(out), *change)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{out / 'last.ckpt'} was made with {named}" in lines[0]
    assert "valid: resume with" in lines[0]


def test_an_error_from_a_dataloader_worker_is_reported_as_its_own_one_line_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Streaming folders decode in worker processes; a corrupt file there still names itself."""
    import torch
    from torch.utils.data import DataLoader

    from contrastkit.data.datasets import CorruptImageError, StreamingImages

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    images = StreamingImages([str(bad)], torch.zeros(1, dtype=torch.int64), ["a"], None)
    with pytest.raises(CorruptImageError) as error:
        next(iter(DataLoader(images, num_workers=1)))
    assert "Original Traceback" in str(error.value)  # what the CLI has to clean up
    assert cli._fail(str(error.value)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"contrastkit: error: cannot decode image {bad}")
    assert "Traceback" not in line
