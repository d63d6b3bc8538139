"""Every evaluation protocol's options: one table, with defaults, types, valid choices and help.

`protocol_options` fills a protocol's defaults from a mapping of user values (text from a command
line is converted), naming the offending key or value and what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import EvaluationError


@dataclass(frozen=True)
class Option:
    """One option: its default (whose type is the option's), valid choices, and a help line."""

    default: Any
    help: str
    choices: tuple[str, ...] = ()

    def convert(self, key: str, value: Any) -> Any:
        """`value` as this option's type, or EvaluationError naming the key and value."""
        kind = type(self.default)
        converted = _convert(key, value, kind, self.default)
        if self.choices and converted not in self.choices:
            raise EvaluationError(f"{key}={value!r}: valid: {', '.join(self.choices)}")
        return converted


def _convert(key: str, value: Any, kind: type, default: Any) -> Any:
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            element = float if any(isinstance(d, float) for d in default) else int
            return tuple(_number(str(i).strip(), element) for i in items if str(i).strip())
        return _number(value, kind)
    except (TypeError, ValueError, OverflowError):
        expected = "comma-separated numbers" if kind is tuple else kind.__name__
        raise EvaluationError(f"{key}={value!r}: expected {expected}") from None


def _number(value: Any, kind: type) -> int | float:
    if isinstance(value, bool):
        raise ValueError
    number = float(value)
    if kind is int and number != int(number):
        raise ValueError
    return int(number) if kind is int else number


NETWORK = {
    "encoder": Option(
        "online", "which network: the online one, or the EMA target's", ("online", "target")
    ),
    "resize": Option(0, "resize the shorter side to this before the centre crop (0: as trained)"),
    "crop": Option(0, "centre-crop side after resizing (0: as trained)"),
}
"""Which network reads the images, and at what resolution: every protocol has these."""

FEW_SHOT = {
    "label_fraction": Option(1.0, "train on this class-balanced, seeded fraction of the labels"),
    "per_class": Option(0, "train on this many seeded labels per class (0: all)"),
}

TRAINING = {
    "optimizer": Option("sgd", "the head's optimiser", ("sgd", "adamw")),
    "lr": Option(0.1, "peak learning rate"),
    "weight_decay": Option(0.0, "weight decay (decoupled for adamw)"),
    "momentum": Option(0.9, "SGD momentum"),
    "adam_eps": Option(1e-8, "AdamW's epsilon"),
    "epochs": Option(100, "passes over the training samples"),
    "batch_size": Option(256, "samples per step"),
    "schedule": Option(
        "step", "learning-rate schedule after the warm-up", ("step", "cosine", "constant")
    ),
    "milestones": Option((), "step schedule: epochs after which lr ×= gamma (empty: 60%, 80%)"),
    "gamma": Option(0.1, "step schedule: the factor at each milestone"),
    "warmup_epochs": Option(0.0, "linear warm-up from 0, in epochs (fractions allowed)"),
    "cosine_cycles": Option(0.5, "cosine schedule: cycles over the run (0.5 ends at 0)"),
    "selection": Option("last", "keep the last epoch, or the best on validation", ("last", "best")),
    "select_by": Option("top1", "the validation figure `best` maximises", ("top1", "top5")),
    "val_fraction": Option(0.1, "with selection=best: fraction of the training split held out"),
    "val_split": Option(
        "class_tail",
        "how the validation split is carved: the last fraction of each class, or at random",
        ("class_tail", "random"),
    ),
    "augment": Option(False, "random resized crop + flip while training (features per epoch)"),
    "crop_scale": Option(
        0.0, "smallest crop area of the training augmentation (0: the pretraining preset's)"
    ),
    "resume": Option(True, "continue from this evaluation's per-epoch state after a stop"),
    **FEW_SHOT,
}
"""A trained head's options (linear, finetune)."""

SGD_HEAD_ONLY = (
    "optimizer", "lr", "weight_decay", "adam_eps", "augment", "crop_scale", "resume", "selection"
)  # fmt: skip
"""Training options the sweep has not: its heads use SGD on cached features over its own grid
of lr and weight decay, in one run, and are compared on validation at their last epoch."""

OPTIONS: dict[str, dict[str, Option]] = {
    "linear": {**NETWORK, **TRAINING},
    "linear-sweep": {
        **NETWORK,
        **{k: v for k, v in TRAINING.items() if k not in SGD_HEAD_ONLY},
        "lrs": Option((0.01, 0.03, 0.1, 0.3, 1.0), "the grid's learning rates"),
        "weight_decays": Option((0.0, 1e-5, 1e-4, 1e-3), "the grid's weight decays"),
    },
    "logreg": {
        **NETWORK,
        "normalize": Option("standardise", "feature normalisation", ("standardise", "l2", "none")),
        "C": Option(1.0, "inverse regularisation strength"),
        "max_iter": Option(1000, "solver iterations"),
        "calibrated": Option(False, "wrap in a sigmoid CalibratedClassifierCV"),
        "cv_folds": Option(5, "calibrated: cross-validation folds"),
        **FEW_SHOT,
    },
    "knn": {
        **NETWORK,
        "k": Option(200, "neighbours"),
        "temperature": Option(0.1, "vote weight exp(similarity / temperature)"),
        "metric": Option("cosine", "neighbour similarity", ("cosine", "euclidean")),
    },
    "finetune": {
        **NETWORK,
        **TRAINING,
        "lr": Option(0.01, "peak learning rate"),
        "epochs": Option(30, "passes over the training samples"),
        "schedule": replace(TRAINING["schedule"], default="cosine"),
        "selection": replace(TRAINING["selection"], default="best"),
        "augment": replace(TRAINING["augment"], default=True),
    },
    "metrics": {
        **NETWORK,
        "k": Option(200, "kNN neighbours"),
        "temperature": Option(0.1, "kNN vote temperature"),
        "max_samples": Option(4096, "test images for alignment, uniformity and the map"),
    },
}
"""Each protocol's options with their defaults."""

PROTOCOLS = tuple(OPTIONS)


def protocol_options(protocol: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol's defaults updated with `options`, converted to the defaults' types.

    Text values (from a command line) are converted; None means "the default".
    """
    if protocol not in OPTIONS:
        raise EvaluationError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    table = OPTIONS[protocol]
    settings = {key: option.default for key, option in table.items()}
    for key, value in options.items():
        if key not in table:
            raise EvaluationError(
                f"unknown option {key!r} for protocol {protocol}; valid: {', '.join(table)}"
            )
        if value is not None:
            settings[key] = table[key].convert(key, value)
    return settings


def split_network(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the network options: encoder, resize, crop; the protocol's own options)."""
    network = {k: v for k, v in settings.items() if k in NETWORK}
    return network, {k: v for k, v in settings.items() if k not in NETWORK}
