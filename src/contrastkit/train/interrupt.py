"""Ctrl-C during pretraining: finish the step, save `last.ckpt` there, and say how to go on.

Lightning's own handling prints its message and exits with status 1, saving nothing. Here the
first SIGINT only sets a flag; after the current optimiser step (weights, optimiser, EMA and
probe consistent) the run writes `last.ckpt` atomically and stops with
TrainingInterruptedError (exit status 130). A second Ctrl-C interrupts at once, as usual.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from ..errors import TrainingInterruptedError


class SaveOnInterrupt(Callback):
    """Turn a Ctrl-C into a checkpoint at `path` after the current step, then stop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requested = False
        self.agreed = False  # every rank saw the request (by the last batch's end)
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) of the checkpoint

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        """Catch SIGINT (main thread only) for the duration, restoring the old handler after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def request(signum: int, frame: Any) -> None:
            self.requested = True
            signal.signal(signal.SIGINT, previous)  # a second Ctrl-C stops at once

        signal.signal(signal.SIGINT, request)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        requested = self.requested
        if trainer.world_size > 1:  # every rank must save together
            flag = torch.tensor(float(requested), device=pl_module.device)
            requested = bool(trainer.strategy.reduce(flag, reduce_op="sum").item())
        self.agreed = requested
        if not requested or self.saved_at is not None:
            return
        if idx + 1 >= trainer.num_training_batches:
            return  # the epoch's last batch: its own checkpoint follows, stop after it
        trainer.save_checkpoint(self.path)
        self.saved_at = (trainer.current_epoch, trainer.global_step)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: Any, idx: int
    ) -> None:
        if self.agreed and self.saved_at is None and idx == 0:  # after the epoch's checkpoint
            self.saved_at = (trainer.current_epoch, trainer.global_step)
        self._stop(trainer)

    def _stop(self, trainer: L.Trainer) -> None:
        """Raise once the saved step's metrics are logged (Lightning logs them after the
        batch-end hooks), writing them to disk first."""
        if self.saved_at is None:
            return
        for logger in trainer.loggers:
            logger.save()
        epoch, step = self.saved_at
        raise TrainingInterruptedError(
            f"interrupted at epoch {epoch} step {step}; {self.path} saved, continue with --resume"
        )
