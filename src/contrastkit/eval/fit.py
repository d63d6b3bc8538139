"""The epoch loop of a trained head (linear, finetune): selection on a validation split, and a
state file written each epoch so an interrupted evaluation resumes where it stopped.

Selection `best` keeps the weights of the epoch whose validation figure (`top1` or `top5`) is
highest (the first such epoch on ties); `last` keeps the last epoch's. The test split never
takes part.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..fileio import atomic_torch_save
from .progress import Progress


@dataclass
class FitResult:
    """The epoch kept (1-based), its validation figures, and every epoch's, in order."""

    epoch: int
    val: dict[str, float] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epochs: int,
    train_epoch: Callable[[int], None],
    validate: Callable[[], dict[str, float]] | None,
    select_by: str,
    generator: torch.Generator,
    state_path: Path | None = None,
    fingerprint: dict[str, Any] | None = None,
    resume: bool = True,
) -> FitResult:
    """Run `train_epoch(epoch)` for epochs 1..`epochs`, then load the kept epoch's weights.

    With `validate` (selection `best`), each epoch is scored on the validation split and the best
    kept. With `state_path`, model, optimiser, schedule, `generator`, the best weights so far and
    the history are saved atomically after each epoch; with `resume`, a state whose
    `fingerprint` (the settings) matches is continued, and the file is removed when done.
    """
    key = json.dumps(fingerprint or {}, sort_keys=True, default=str)
    best_state: dict[str, Any] | None = None
    best_score, result, start = float("-inf"), FitResult(epoch=epochs), 1
    if state_path is not None and resume and state_path.is_file():
        saved = _read(state_path)
        if saved is not None and saved["fingerprint"] == key:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            generator.set_state(saved["generator"])
            best_state, best_score = saved["best_state"], saved["best_score"]
            result = FitResult(saved["best_epoch"], saved["best_val"], saved["history"])
            start = result.resumed_from = saved["epoch"] + 1
    progress = Progress(f"{(fingerprint or {}).get('protocol', 'classifier')} epochs", epochs)
    if start > 1:
        progress.update(start - 1)
    for epoch in range(start, epochs + 1):
        train_epoch(epoch)
        progress.update()
        if validate is not None:
            figures = validate()
            result.history.append(figures)
            if figures[select_by] > best_score:
                best_score, result.epoch, result.val = figures[select_by], epoch, figures
                best_state = copy.deepcopy(model.state_dict())
        if state_path is not None:
            atomic_torch_save(
                {
                    "fingerprint": key,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "best_state": best_state,
                    "best_score": best_score,
                    "best_epoch": result.epoch,
                    "best_val": result.val,
                    "history": result.history,
                },
                state_path,
            )
    progress.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    return result


def _read(path: Path) -> dict[str, Any] | None:
    """A saved state, or None (a fresh start) when the file cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged state costs a restart, never the evaluation
        return None
