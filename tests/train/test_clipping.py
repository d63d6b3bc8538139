"""Gradient clipping (`grad_clip`, `grad_clip_mode`): against torch's `clip_grad_norm_` (global)
and a transcription of DINO's `clip_gradients` loop (per parameter), on gradients and on the
updates of a training run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from contrastkit import cli
from contrastkit.train.clipping import clip_gradients
from contrastkit.train.config import ConfigError, build_config
from contrastkit.train.run import pretrain

from .small_run import small_config
from .step_recorder import StepRecorder


def _gradients() -> list[Tensor]:
    """Gradients of several shapes whose norms span 0.01 to 10."""
    torch.manual_seed(0)
    shapes = [(3, 4), (5,), (2, 3, 3, 3), (7,)]
    scales = [10.0, 0.01, 1.0, 0.2]
    grads = [torch.randn(shape) for shape in shapes]
    return [g * scale / g.norm() for g, scale in zip(grads, scales, strict=True)]


def _torch_global(grads: list[Tensor], max_norm: float) -> list[Tensor]:
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params]


def _dino_per_parameter(grads: list[Tensor], clip: float) -> list[Tensor]:
    """DINO's per-parameter rule, one gradient at a time with a Python branch: a gradient whose
    norm n exceeds the clip is scaled by clip / (n + 1e-6), the others are left alone."""
    clipped = []
    for grad in grads:
        norm = float(torch.linalg.vector_norm(grad))
        factor = clip / (norm + 1e-6)
        clipped.append(grad * factor if factor < 1 else grad.clone())
    return clipped


def _clipped(grads: list[Tensor], max_norm: float, mode: str) -> list[Tensor]:
    copies = [g.clone() for g in grads]
    clip_gradients(copies, max_norm, mode)
    return copies


def _assert_all_close(actual: list[Tensor], expected: list[Tensor], **tolerance: float) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tolerance)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_global_clipping_equals_torchs_clip_grad_norm(max_norm: float) -> None:
    grads = _gradients()
    _assert_all_close(_clipped(grads, max_norm, "global"), _torch_global(grads, max_norm))
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    clipped_total = torch.linalg.vector_norm(
        torch.cat([g.flatten() for g in _clipped(grads, max_norm, "global")])
    )
    assert clipped_total == pytest.approx(min(max_norm, float(total)), rel=1e-5)


@pytest.mark.parametrize("clip", [0.005, 0.5, 3.0])
def test_per_parameter_clipping_equals_dinos_loop(clip: float) -> None:
    grads = _gradients()
    _assert_all_close(_clipped(grads, clip, "per_parameter"), _dino_per_parameter(grads, clip))


def test_per_parameter_clipping_leaves_small_gradients_exactly_as_they_were() -> None:
    """At 0.5, the norms 10 and 1 are clipped to 0.5 each, while 0.01 and 0.2 stay bit for bit:
    unlike one global norm, which scales every gradient alike."""
    grads = _gradients()
    clipped = _clipped(grads, 0.5, "per_parameter")
    norms = [float(g.norm()) for g in clipped]
    assert norms[0] == pytest.approx(0.5, rel=1e-5) and norms[2] == pytest.approx(0.5, rel=1e-5)
    assert torch.equal(clipped[1], grads[1]) and torch.equal(clipped[3], grads[3])
    assert not torch.equal(_clipped(grads, 0.5, "global")[1], grads[1])


def _run_steps(tmp_path: Path, **values: object) -> StepRecorder:
    """One digits epoch (11 steps) of plain SGD at a constant lr 0.5, recording every step."""
    recorder = StepRecorder()
    settings = {
        "optimizer": "sgd",
        "lr": 0.5,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup_epochs": 0,
        "probe": False,
        **values,
    }
    pretrain(small_config(tmp_path, **settings), callbacks=[recorder])
    return recorder


@pytest.mark.parametrize("micro_batch_size", [None, 48])
@pytest.mark.parametrize("mode", ["global", "per_parameter"])
def test_each_update_is_the_reference_clipped_gradient(
    tmp_path: Path, mode: str, micro_batch_size: int | None
) -> None:
    """With SGD (no momentum, no decay) each step moves the weights by −lr × the clipped
    gradient, the reference clipping the gradients the backward pass left (with gradient
    caching: those summed over the micro-batches)."""
    clip = 0.05
    recorder = _run_steps(
        tmp_path, grad_clip=clip, grad_clip_mode=mode, micro_batch_size=micro_batch_size
    )
    reference = _torch_global if mode == "global" else _dino_per_parameter
    assert len(recorder.steps) == 11
    clipped_any = False
    for index, step in enumerate(recorder.steps):
        names = list(step.grads)
        raw = [step.grads[n] for n in names]
        expected = reference(raw, clip)
        clipped_any |= any(not torch.equal(e, r) for e, r in zip(expected, raw, strict=True))
        for name, grad in zip(names, expected, strict=True):
            torch.testing.assert_close(
                step.after[name] - step.before[name],
                -0.5 * grad,
                rtol=1e-4,
                atol=1e-7,
                msg=lambda m, name=name, index=index: f"step {index}, {name}: {m}",
            )
    assert clipped_any  # the clip norm was below the gradients' norm: clipping acted


def test_without_grad_clip_each_update_is_the_raw_gradient(tmp_path: Path) -> None:
    """The recorder's gradients are the ones the optimiser uses when nothing clips them."""
    recorder = _run_steps(tmp_path)
    step = recorder.steps[0]
    for name, grad in step.grads.items():
        torch.testing.assert_close(
            step.after[name] - step.before[name], -0.5 * grad, rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"grad_clip": 0}, "grad_clip=0.0"),
        ({"grad_clip": -1}, "grad_clip=-1.0"),
        ({"grad_clip_mode": "per_layer"}, "'per_layer'"),
        ({"weight_decay_final": -0.1}, "weight_decay_final=-0.1"),
    ],
)
def test_bad_clip_and_weight_decay_values_are_one_line_errors(values: dict, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_config([values])
    assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("override", "named"),
    [("grad_clip=0", "grad_clip=0.0"), ("grad_clip_mode=norm", "'norm'")],
)
def test_the_command_line_refuses_bad_clip_values_with_exit_code_2(
    override: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["pretrain", override]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("contrastkit: error:") and named in line
    assert captured.out == ""
