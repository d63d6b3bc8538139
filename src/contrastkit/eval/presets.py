"""Named evaluation protocols of the seeds (../shared/reference/seed_recipes.md): each a protocol,
the features it reads, and option values, so our figures can stand beside theirs.

A preset is used as `--protocol <name>`; options given with it override the preset's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # 000: a linear layer on the frozen 2048-d projector output, AdamW lr 1e-3 (eps 1e-6, wd
    # 0.01), 5% warm-up then a 0.3-cycle cosine, batch 128, 200 epochs, the epoch chosen by
    # top-5 on a random 10% of the training split; eval images Resize 256 + CenterCrop 224.
    "seed000": {
        "protocol": "linear",
        "features": "projector",
        "optimizer": "adamw",
        "lr": 1e-3,
        "adam_eps": 1e-6,
        "weight_decay": 0.01,
        "schedule": "cosine",
        "warmup_epochs": 10.0,
        "cosine_cycles": 0.3,
        "epochs": 200,
        "batch_size": 128,
        "selection": "best",
        "select_by": "top5",
        "val_split": "random",
        "val_fraction": 0.1,
        "resize": 256,
        "crop": 224,
    },
    # 002 (solo-learn offline linear): SGD 0.1, momentum 0.9, no weight decay, ×0.1 at epochs
    # 60 and 80 of 100, batch 256, random resized crop (0.2, 1) + flip on every training image
    # through the frozen encoder; eval images Resize 256 + CenterCrop 224.
    "seed002-linear": {
        "protocol": "linear",
        "features": "backbone",
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "schedule": "step",
        "milestones": (60, 80),
        "gamma": 0.1,
        "epochs": 100,
        "batch_size": 256,
        "augment": True,
        "crop_scale": 0.2,
        "selection": "last",
        "resize": 256,
        "crop": 224,
    },
    # 003 (SupContrast main_linear): SGD lr 5, momentum 0.9, wd 0, batch 512, ×0.2 at epochs
    # 60, 75 and 90 of 100, crop (0.2, 1) + flip while training, images at their own size.
    # The seed reports its best *test* epoch; we never select on test, so the last epoch.
    "seed003-supcon-linear": {
        "protocol": "linear",
        "features": "backbone",
        "optimizer": "sgd",
        "lr": 5.0,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "schedule": "step",
        "milestones": (60, 75, 90),
        "gamma": 0.2,
        "epochs": 100,
        "batch_size": 512,
        "augment": True,
        "crop_scale": 0.2,
        "selection": "last",
    },
    # 004: the EMA target's backbone, L2-normalised features, LogisticRegression(max_iter=100)
    # inside a 5-fold sigmoid CalibratedClassifierCV.
    "seed004-logreg": {
        "protocol": "logreg",
        "features": "backbone",
        "encoder": "target",
        "normalize": "l2",
        "C": 1.0,
        "max_iter": 100,
        "calibrated": True,
        "cv_folds": 5,
    },
}
"""Each seed's evaluation protocol: `protocol`, `features`, and that protocol's options."""


def resolve(
    name: str, features: str | None, options: Mapping[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """(protocol, features, options) for a protocol or preset `name`.

    A preset supplies its protocol, features and option values; `features` and `options` given
    here win over the preset's. For a plain protocol, features default to the backbone's.
    """
    preset = dict(PRESETS.get(name, {"protocol": name}))
    protocol = preset.pop("protocol")
    preset_features = preset.pop("features", "backbone")
    given = {key: value for key, value in options.items() if value is not None}
    return protocol, features or preset_features, {**preset, **given}


def options_for(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The part of `options` that protocol or preset `name` takes (a grid sets options for
    several protocols at once)."""
    from .options import OPTIONS

    protocol = PRESETS.get(name, {"protocol": name})["protocol"]
    return {key: value for key, value in options.items() if key in OPTIONS.get(protocol, {})}
