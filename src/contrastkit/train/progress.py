"""The progress bar: Lightning's, with the step figures the module last read back."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class StepFiguresBar(TQDMProgressBar):
    """Shows the module's `progress_figures` (loss, img/s), which it reads from the device only
    every `log_every_n_steps` steps: a figure logged to Lightning's bar is read every step."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        figures = getattr(pl_module, "progress_figures", {})
        return {**super().get_metrics(trainer, pl_module), **figures}
