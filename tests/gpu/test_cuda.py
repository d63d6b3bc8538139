"""Training on a CUDA device: mixed precision, channels-last, torch.compile, and the host-device
synchronisations of a step as CUDA's own sync debug mode counts them. Skipped without CUDA;
`make gpu-check` runs them (with the other `gpu`-marked tests) on a GPU machine."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from contrastkit.train.run import build_module, pretrain

from ..train.small_run import small_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
STEPS = 10  # digits: 1437 training images, a tenth held out, batches of 128


def _cuda_config(out: Path, **values: object):
    return small_config(out, accelerator="gpu", seed=0, **values)


def _loss(out: Path, **values: object) -> float:
    result = pretrain(_cuda_config(out, **values))
    return result.metrics["train/loss_epoch"]


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_mixed_precision_trains_as_float32_does(tmp_path: Path, precision: str) -> None:
    reference = _loss(tmp_path / "32")
    mixed = _loss(tmp_path / precision, precision=precision)
    assert math.isfinite(mixed)
    assert mixed == pytest.approx(reference, rel=0.05)


def test_channels_last_and_contiguous_train_alike(tmp_path: Path) -> None:
    module = build_module(_cuda_config(tmp_path / "probe", channels_last=True))
    module.to("cuda").setup("fit")
    weight = next(p for p in module.method.backbone.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    nhwc = _loss(tmp_path / "nhwc", channels_last=True)
    nchw = _loss(tmp_path / "nchw", channels_last=False)
    assert nhwc == pytest.approx(nchw, rel=0.02)


def test_compiled_backbone_trains_as_eager_does(tmp_path: Path) -> None:
    eager = _loss(tmp_path / "eager")
    compiled = _loss(tmp_path / "compiled", compile=True)
    assert compiled == pytest.approx(eager, rel=0.02)


class _SyncsPerStep(L.Callback):
    """CUDA's synchronisation warnings from each batch's start to the next one's, from the
    third batch on (the first ones allocate, and step 0 writes its figures)."""

    def __init__(self, caught: list[warnings.WarningMessage]) -> None:
        self.caught = caught
        self.per_step: dict[int, list[str]] = {}
        self._open: tuple[int, int] | None = None

    def _close(self) -> None:
        if self._open is not None:
            step, start = self._open
            self.per_step[step] = [f"{w.filename}:{w.lineno}" for w in self.caught[start:]]
            self._open = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        self._close()
        if batch_idx >= 2:
            torch.cuda.set_sync_debug_mode("warn")
            self._open = (batch_idx, len(self.caught))

    def on_validation_start(self, trainer, module) -> None:
        self._close()
        torch.cuda.set_sync_debug_mode(0)

    def on_train_epoch_end(self, trainer, module) -> None:
        self._close()
        torch.cuda.set_sync_debug_mode(0)


# fp16's grad scaler reads its own overflow flag in the optimiser step: one more.
@pytest.mark.parametrize(("precision", "allowed"), [("32", 1), ("bf16", 1), ("16", 2)])
def test_a_training_step_synchronises_at_most_once(
    tmp_path: Path, precision: str, allowed: int
) -> None:
    config = _cuda_config(tmp_path, precision=precision, log_every_n_steps=1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counter = _SyncsPerStep(caught)
        try:
            pretrain(config, callbacks=[counter])
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert sorted(counter.per_step) == list(range(2, STEPS))
    for step, syncs in counter.per_step.items():
        assert 1 <= len(syncs) <= allowed, f"step {step}: synchronised at {syncs}"
