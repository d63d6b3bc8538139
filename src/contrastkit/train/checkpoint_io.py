"""Checkpoint writes that never leave a half-written file under the final name."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..fileio import CheckpointWriteError, atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic writes (temp file + rename).

    A failed write raises :class:`CheckpointWriteError` naming the file, so the command line can
    tell it from other errors; Lightning passes it through `fit` unwrapped.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        try:
            atomic_torch_save(checkpoint, path)
        except OSError as error:
            reason = error.strerror or str(error)
            raise CheckpointWriteError(f"cannot write checkpoint {path}: {reason}") from error
