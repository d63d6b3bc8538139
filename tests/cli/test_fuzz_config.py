"""Fuzzing the pretrain command line: any configuration either reaches training with a valid
config, or is refused with one line on stderr and exit code 2; never a traceback."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contrastkit import cli
from contrastkit.train import run
from contrastkit.train.config import (
    BACKBONE_NAMES,
    FIELDS,
    LOGGERS,
    METHOD_NAMES,
    OPTIMIZER_NAMES,
    PRECISIONS,
    PretrainConfig,
)
from contrastkit.train.run import PretrainResult

CHOICES = (*METHOD_NAMES, *BACKBONE_NAMES, *OPTIMIZER_NAMES, *PRECISIONS, *LOGGERS)
CHOICES += ("digits", "cifar10", "imagefolder", "nt_xent", "vicreg", "dcl", "auto", "cpu")
NUMBERS = (0, 1, 2, -1, 0.5, 1e-9, 1e9, 10**30, math.nan, math.inf, -math.inf, 2.5)
TEXT = ("", "none", "true", "false", "1e400", "-0", "0x10", " ", "a=b", "--", "inf", "nan")

values = st.one_of(
    st.sampled_from(CHOICES),
    st.sampled_from(NUMBERS).map(str),
    st.sampled_from(TEXT),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_subnormal=False).map(str),  # the suite flushes denormals (conftest)
    st.text(max_size=12),
)
keys = st.one_of(
    st.sampled_from([k for k in FIELDS if k != "loss_options"]),
    st.sampled_from(["loss.temperature", "loss.sigma", "loss.tau", "colour", "", "lr ", "-"]),
    st.text(max_size=8),
)
as_option = st.booleans()  # --key value, or the key=value override form
# Values that are valid on their own, so that many examples reach training.
PLAUSIBLE = {
    "method": METHOD_NAMES,
    "backbone": BACKBONE_NAMES,
    "optimizer": OPTIMIZER_NAMES,
    "epochs": ("1", "3"),
    "batch_size": ("2", "64", "1e2"),
    "lr": ("0", "0.05", "1e-3"),
    "seed": ("0", "-1", "7"),
    "n_local": ("0", "2"),
    "val_fraction": ("0", "0.5"),
    "ema_base": ("0", "1"),
    "probe": ("true", "off", "1"),
    "skip_nonfinite": ("0", "3"),
    "resume": ("false",),
}
plausible = st.sampled_from(sorted(PLAUSIBLE)).flatmap(
    lambda k: st.tuples(st.just(k), st.sampled_from(PLAUSIBLE[k]), as_option)
)
entry = st.one_of(plausible, plausible, st.tuples(keys, values, as_option))


class _TrainingStartedError(Exception):
    """Raised by the stub in place of training."""


@pytest.fixture
def stub_pretrain(monkeypatch: pytest.MonkeyPatch) -> list[PretrainConfig]:
    """Replace training by a stub that records the validated config it was given."""
    started: list[PretrainConfig] = []

    def fake(config: PretrainConfig, callbacks: object = ()) -> PretrainResult:
        started.append(config)
        raise _TrainingStartedError

    monkeypatch.setattr(run, "pretrain", fake)
    return started


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(entry, max_size=6))
def test_any_configuration_starts_training_or_is_a_one_line_error(
    stub_pretrain: list[PretrainConfig], entries: list[tuple[str, str, bool]]
) -> None:
    args: list[str] = []
    for key, value, option in entries:
        if option and key in FIELDS:
            args += [f"--{key.replace('_', '-')}", value]
        else:
            args.append(f"{key}={value}")
    stub_pretrain.clear()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(["pretrain", *args])
        except _TrainingStartedError:
            code = None
        except SystemExit as exit_:
            code = exit_.code
    event("started training" if code is None else "refused")
    if code is None:
        assert len(stub_pretrain) == 1
        assert isinstance(stub_pretrain[0], PretrainConfig)
        stub_pretrain[0].validate()
        return
    lines = stderr.getvalue().splitlines()
    assert code == 2, (args, stderr.getvalue())
    assert len(lines) == 1, (args, lines)
    assert lines[0].startswith(("contrastkit: error: ", "contrastkit pretrain: error: ")), lines
    assert "Traceback" not in lines[0]
