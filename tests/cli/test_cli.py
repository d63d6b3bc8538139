"""The console script: fast answers, the loss listing, and exit code 2 for bad input."""

from __future__ import annotations

import inspect
import subprocess
import sys
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
    return subprocess.run(
        [sys.executable, "-m", "contrastkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--method", "byol"], "'byol'"),
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
