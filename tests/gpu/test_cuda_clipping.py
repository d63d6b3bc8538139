"""Gradient clipping under fp16: Lightning's grad scaler unscales the gradients before the
module's `on_before_optimizer_step`, so the clip norm is in true units. Skipped without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contrastkit.train.run import pretrain

from ..train.small_run import small_config
from ..train.step_recorder import StepRecorder
from ..train.test_clipping import _dino_per_parameter, _torch_global

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("mode", ["global", "per_parameter"])
def test_under_fp16_each_update_is_the_unscaled_gradient_clipped(tmp_path: Path, mode: str) -> None:
    """Steps the grad scaler skips (inf gradients) leave the weights as they were; every other
    step moves them by −lr × the reference clipping of the unscaled gradients."""
    recorder = StepRecorder()
    config = small_config(
        tmp_path, accelerator="gpu", precision="16", optimizer="sgd", lr=0.5, momentum=0.0,
        weight_decay=0.0, schedule="constant", warmup_epochs=0, probe=False, grad_clip=0.05,
        grad_clip_mode=mode,
    )  # fmt: skip
    pretrain(config, callbacks=[recorder])
    reference = _torch_global if mode == "global" else _dino_per_parameter
    compared = 0
    for step in recorder.steps:
        names = list(step.grads)
        raw = [step.grads[n].float() for n in names]
        if not all(torch.isfinite(g).all() for g in raw):
            assert all(torch.equal(step.after[n], step.before[n]) for n in names)
            continue
        compared += 1
        for name, grad in zip(names, reference(raw, 0.05), strict=True):
            torch.testing.assert_close(
                step.after[name] - step.before[name], -0.5 * grad, rtol=1e-4, atol=1e-6
            )
    assert compared >= 5
