"""Frozen features of an encoder's evaluation splits, extracted once and cached on disk.

Several protocols on one checkpoint share the extraction: the cache key is the weights'
identity (checkpoint path, mtime and size, or the random backbone and its seed), the dataset
and its folder, the split and the feature kind.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..fileio import atomic_torch_save
from .data import batches
from .encoder import Encoder
from .errors import EvaluationError
from .progress import Progress

FEATURES = ("backbone", "projector")
_CACHE_VERSION = 1  # bump when extraction changes, so stale features are not reused


def require_features(encoder: Encoder, features: str) -> None:
    """Raise EvaluationError unless `encoder` can produce `features`."""
    if features not in FEATURES:
        raise EvaluationError(f"unknown features {features!r}; valid: {', '.join(FEATURES)}")
    if features == "projector" and encoder.projector is None:
        owner = "a random backbone" if encoder.method is None else f"method {encoder.method}"
        raise EvaluationError(f"{encoder.spec}: {owner} has no projector; use features=backbone")


def embed(encoder: Encoder, inputs: Tensor, features: str) -> Tensor:
    """`features` of normalised images: the backbone's output, or the projector's on top."""
    out = encoder.backbone(inputs)
    return encoder.projector(out) if features == "projector" else out


def cache_path(encoder: Encoder, split: str, features: str) -> Path:
    """Where the features of `split` are cached, under `<cache_dir>/features`."""
    data_dir = str(Path(encoder.data_dir).expanduser().resolve()) if encoder.data_dir else ""
    key = [_CACHE_VERSION, encoder.identity, encoder.dataset, data_dir, encoder.resize]
    if encoder.holdout is not None:  # the split is a part of train/
        key.append(f"holdout={encoder.holdout}")
    digest = hashlib.sha256("|".join(map(str, [*key, split, features])).encode()).hexdigest()
    return encoder.cache_dir / "features" / f"{encoder.dataset}-{split}-{features}-{digest[:20]}.pt"


@torch.no_grad()
def extract_features(
    encoder: Encoder, split: str, features: str = "backbone", batch_size: int = 512
) -> tuple[Tensor, Tensor]:
    """float32 (N, F) features of un-augmented, normalised images of `split`, and their labels.

    Computed in eval mode on the encoder's device, returned on the CPU; read from the cache
    when an earlier call stored them.
    """
    require_features(encoder, features)
    path = cache_path(encoder, split, features)
    cached = _read(path)
    if cached is not None:
        return cached
    images = encoder.load(split)
    recipe = encoder.recipe()
    encoder.backbone.eval()
    if encoder.projector is not None:
        encoder.projector.eval()
    outputs, labels = [], []
    progress = Progress(f"{split} features", -(-len(images) // batch_size))
    for batch, batch_labels in batches(images, batch_size):
        inputs = encoder.prepare(batch.to(encoder.device), recipe)
        outputs.append(embed(encoder, inputs, features).float().cpu())
        labels.append(batch_labels)
        progress.update()
    progress.close()
    result = torch.cat(outputs), torch.cat(labels)
    bad = int((~torch.isfinite(result[0]).all(dim=1)).sum())
    if bad:
        raise EvaluationError(
            f"{encoder.spec}: {bad} of {len(result[0])} {split} feature vectors are not finite "
            "(the training diverged)"
        )
    _write(path, *result)
    return result


def _read(path: Path) -> tuple[Tensor, Tensor] | None:
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return stored["features"], stored["labels"]
    except Exception as error:  # an unreadable cache is recomputed, never fatal
        warnings.warn(f"recomputing unreadable feature cache {path}: {error}", stacklevel=3)
        return None


def _write(path: Path, features: Tensor, labels: Tensor) -> None:
    try:
        atomic_torch_save({"features": features, "labels": labels}, path)
    except OSError as error:  # a read-only cache costs a recomputation, not the evaluation
        warnings.warn(f"cannot write feature cache {path}: {error}", stacklevel=3)
