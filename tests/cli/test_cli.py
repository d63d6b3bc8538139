"""The console script: fast answers, the loss listing, and exit code 2 for bad input."""

from __future__ import annotations

import inspect
import subprocess
import sys

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
    code = "import sys; from contrastkit import cli; cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"
