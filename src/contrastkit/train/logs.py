"""A CSV metrics log that a resumed run continues instead of replacing.

Lightning's CSV logger deletes `metrics.csv` when it starts; a resumed run would then hold only
the epochs after the interruption. Here a resumed run keeps the rows logged before its
checkpoint's step (rows after it are replayed by the resumed run) and appends its own.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from ..fileio import atomic_write_text


class _ContinuingWriter(ExperimentWriter):
    """Lightning's writer, keeping the rows of an existing `metrics.csv` before `keep_before`."""

    def __init__(self, log_dir: str, keep_before: int) -> None:
        self._keep_before = keep_before
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            rows = [row for row in reader if _step(row) < self._keep_before]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buffer.getvalue())
        self.metrics_keys = sorted(fields)  # new keys rewrite the header, as Lightning does


def _step(row: dict[str, str]) -> int:
    try:
        return int(float(row.get("step") or 0))
    except ValueError:
        return 0


class ContinuingCSVLogger(CSVLogger):
    """`CSVLogger(out, name="", version="logs")`; with `keep_before` (a resumed checkpoint's
    step) the rows logged before that step are kept rather than deleted."""

    def __init__(self, save_dir: str | os.PathLike, keep_before: int | None = None) -> None:
        super().__init__(save_dir, name="", version="logs")
        self._keep_before = keep_before

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self._keep_before is not None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._keep_before)
        return super().experiment


class FlushLogs(Callback):
    """Write the loggers' buffered rows when an epoch starts, so that a run killed later holds
    on disk every row logged up to its last epoch checkpoint."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            logger.save()
