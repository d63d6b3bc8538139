"""Resuming a stopped run continues it exactly: same weights as the uninterrupted run (CPU)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from contrastkit.train.config import ConfigError, PretrainConfig
from contrastkit.train.run import pretrain

from .small_run import small_config


class _StopAfterFirstEpoch(L.Callback):
    """Ends the fit after epoch 0, as an interrupted run would, once its checkpoint is written."""

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.should_stop = True


def _config(out: Path, method: str = "simclr", **extra: object) -> PretrainConfig:
    return small_config(out, method=method, epochs=2, **extra)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    weights = dict(checkpoint["state_dict"])
    weights.update({f"probe.{k}": v for k, v in checkpoint["probe"]["classifier"].items()})
    return weights


@pytest.mark.slow
@pytest.mark.parametrize(
    "method", ["simclr", "relic", "byol", "moco_v2", "moco_v3", "nnclr", "lejepa"]
)
def test_resume_after_a_stop_reproduces_the_uninterrupted_run(tmp_path: Path, method: str) -> None:
    """Queues of 200 rows (not a multiple of the batch, wrapped within an epoch) and EMA
    targets are part of the state; LeJEPA's directions follow the step."""
    extra = {"gamma_decay_steps": 10, "loss.gamma": 1.0} if method == "relic" else {}
    if method in ("moco_v2", "nnclr"):
        extra["queue_size"] = 200
    pretrain(_config(tmp_path / "straight", method, **extra))
    pretrain(_config(tmp_path / "stopped", method, **extra), callbacks=[_StopAfterFirstEpoch()])
    interrupted = _weights(tmp_path / "stopped" / "last.ckpt")
    pretrain(_config(tmp_path / "stopped", method, resume=True, **extra))

    straight = _weights(tmp_path / "straight" / "last.ckpt")
    resumed = _weights(tmp_path / "stopped" / "last.ckpt")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)
    # The stop really happened mid-run: the first half differs from the end.
    changed = [n for n in straight if not torch.equal(interrupted[n], straight[n])]
    assert changed


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no checkpoint at .*last\.ckpt"):
        pretrain(_config(tmp_path / "empty", resume=True))
