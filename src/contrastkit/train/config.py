"""The pretraining configuration: one flat dataclass, filled from defaults, a YAML preset,
command-line options and `key=value` overrides, and checked in one place.

Kept free of heavy imports so that argument errors answer at once.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHOD_NAMES = ("simclr", "barlow_twins", "vicreg", "simsiam", "supcon", "relic", "supervised")
BACKBONE_NAMES = ("small-cnn", "resnet18", "resnet50", "efficientnet_b0")
OPTIMIZER_NAMES = ("sgd", "lars", "adam", "adamw")
PRECISIONS = ("32", "bf16", "16")
LOGGERS = ("csv", "tensorboard", "wandb")
STL10_SPLITS = ("unlabeled+train", "unlabeled")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
_SIZES = (  # optional sizes; None picks a default
    "image_size",
    "local_size",
    "projector_hidden_dim",
    "projector_out_dim",
    "predictor_hidden_dim",
)


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message is one line."""


@dataclass
class PretrainConfig:
    """Everything `contrastkit pretrain` needs; the defaults train SimCLR on `digits` on a CPU."""

    method: str = "simclr"
    loss: str | None = None
    loss_options: dict[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    dataset: str = "digits"
    data_dir: str | None = None
    cache_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    backbone: str = "small-cnn"
    projector_hidden_dim: int | None = None
    projector_out_dim: int | None = None
    predictor_hidden_dim: int | None = None
    epochs: int = 30
    batch_size: int = 256
    micro_batch_size: int | None = None  # gradient caching: the backbone holds this many samples
    optimizer: str = "sgd"
    lr: float = 0.3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 2.0
    fixed_predictor_lr: bool = False
    n_global: int = 2
    n_local: int = 0
    local_size: int | None = None
    ema_base: float = 0.99
    gamma_decay_steps: int = 0
    skip_nonfinite: int = 0  # optimiser steps with a non-finite loss or gradient to tolerate
    probe: bool = True
    probe_lr: float = 0.1
    val_fraction: float = 0.0
    seed: int = 0
    out: str = "runs/pretrain"
    resume: bool = False
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    sync_batchnorm: bool = False
    precision: str = "32"
    # Tensor cores want NHWC, and oneDNN's CPU convolutions ran small-cnn 1.15–1.3× faster in it
    # (8, 28 and 32 px, forward+backward, batch 256).
    channels_last: bool = True
    compile: bool = False
    loggers: str = "csv,tensorboard"
    workers: int = 2
    progress: bool = True
    # [runtime options]
    # [augmentation options]
    augment: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "augmentation: a recipe name (simclr, byol, seed000, ...) or a mapping of "
            "settings for all views, global/local groups and view<N> (from 1); key=value as "
            "augment.global.blur_p=0.5 (see contrastkit.data.recipes)"
        },
    )
    stem: str = field(
        default="auto",
        metadata={
            "help": "ResNet/EfficientNet stem: small (3x3 stride 1, no max-pool), imagenet "
            "(7x7 stride 2 + max-pool), auto (small below 64 px)"
        },
    )
    # [head options]
    # [optimisation options]
    # [method options]
    # [data options]
    stl10_split: str = field(
        default="unlabeled+train",
        metadata={"help": "STL-10 pretraining images: unlabeled, or unlabeled+train"},
    )
    # [evaluation options]
    # [backbone options]

    def validate(self) -> PretrainConfig:
        """Raise ConfigError naming the first invalid value and what would be valid."""
        from ..data.datasets import DATASET_NAMES, canonical_name
        from ..losses import LOSS_MODULES
        from ..methods.spec import METHODS

        _choice("method", self.method, METHOD_NAMES)
        spec = METHODS[self.method]
        if self.loss is not None:
            _choice("loss", self.loss, spec.losses, f" for method {self.method}")
        dataset = canonical_name(self.dataset)
        _choice("dataset", dataset, DATASET_NAMES)
        _choice("backbone", self.backbone, BACKBONE_NAMES)
        _choice("optimizer", self.optimizer, OPTIMIZER_NAMES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("accelerator", self.accelerator, ACCELERATORS)
        for name in self.loggers.split(","):
            _choice("loggers", name, LOGGERS)
        for name in ("epochs", "batch_size", "devices", "num_nodes", "n_global"):
            _at_least(name, getattr(self, name), 1)
        for name in ("n_local", "workers", "gamma_decay_steps", "skip_nonfinite"):
            _at_least(name, getattr(self, name), 0)
        for name in ("lr", "weight_decay", "momentum", "warmup_epochs", "probe_lr"):
            _at_least(name, getattr(self, name), 0)
        if self.micro_batch_size is not None:
            self._check_micro_batch_size(self.micro_batch_size)
        for name in _SIZES:
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 1)
        if self.n_global + self.n_local < 2 and spec.pairing != "classify":
            raise ConfigError(
                f"views={self.n_global + self.n_local} (n_global + n_local): "
                f"method {self.method} needs at least 2 views"
            )
        if spec.pairing != "classify" and self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size}: contrastive training needs >= 2")
        if self.temperature is not None and not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature}: must be > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction}: must be in [0, 1)")
        if not 0.0 <= self.ema_base <= 1.0:
            raise ConfigError(f"ema_base={self.ema_base}: must be in [0, 1]")
        # [runtime checks]
        # [augmentation checks]
        _check_augmentation(self)
        # [head checks]
        # [optimisation checks]
        # [method checks]
        # [data checks]
        _choice("stl10_split", self.stl10_split, STL10_SPLITS)
        # [evaluation checks]
        # [backbone checks]
        loss = self.loss or spec.default_loss
        if loss in LOSS_MODULES:
            self._check_loss_options(LOSS_MODULES[loss])
        return self

    def _check_micro_batch_size(self, size: int) -> None:
        """Every backbone has batch norm, which cannot train on a micro-batch of one sample."""
        _at_least("micro_batch_size", size, 2)
        if size < self.batch_size and self.batch_size // math.ceil(self.batch_size / size) < 2:
            raise ConfigError(
                f"micro_batch_size={size}: batch_size={self.batch_size} would leave a micro-batch "
                "of 1 sample, which batch norm cannot train on; valid: micro_batch_size >= 3 or "
                "an even batch_size"
            )

    def _check_loss_options(self, module: type) -> None:
        import inspect

        accepted = set(inspect.signature(module).parameters) - {"gather"}
        for key in self.loss_options:
            if key not in accepted:
                raise ConfigError(
                    f"unknown loss option {key!r} for {module.__name__}; "
                    f"valid: {', '.join(sorted(accepted)) or 'none'}"
                )
        if self.temperature is not None and "temperature" not in accepted:
            raise ConfigError(
                f"temperature={self.temperature}: {module.__name__} has no temperature"
            )
        try:  # the loss checks its own values (temperature > 0, chunk_size >= 1, ...)
            module(**self.loss_kwargs())
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{module.__name__}: {error}") from None

    def loss_kwargs(self) -> dict[str, Any]:
        """Loss constructor arguments: `loss_options` plus the `temperature` shortcut."""
        kwargs = dict(self.loss_options)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        return kwargs

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(PretrainConfig)}


def _choice(name: str, value: str, valid: Iterable[str], context: str = "") -> None:
    valid = tuple(valid)
    if value not in valid:
        raise ConfigError(f"unknown {name} {value!r}{context}; valid: {', '.join(valid)}")


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{name}={value}: must be >= {low}")


def _field_type(name: str) -> tuple[type, bool]:
    """The concrete type of a field, and whether it may be None."""
    hint = typing.get_type_hints(PretrainConfig)[name]
    if isinstance(hint, types.UnionType):
        args = typing.get_args(hint)
        return next(t for t in args if t is not type(None)), type(None) in args
    return typing.get_origin(hint) or hint, False


def parse_value(name: str, raw: Any) -> Any:
    """Convert a raw value (a YAML scalar or a command-line string) to field `name`'s type."""
    if name.startswith("loss."):
        return _scalar(raw)
    if name.startswith("augment."):
        return raw  # checked with its key by data.recipes.set_augment_key
    if name == "augment":
        return _augment(raw)
    if name not in FIELDS:
        raise ConfigError(
            f"unknown config key {name!r}; valid: {', '.join(FIELDS)}, loss.<option>, augment.<key>"
        )
    kind, optional = _field_type(name)
    if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
        if not optional:
            raise ConfigError(f"{name}=None: a value is required")
        return None
    if kind is dict:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}={raw!r}: expected a mapping")
        return {str(k): _scalar(v) for k, v in raw.items()}
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r}: expected true or false")
    try:
        if kind is int and isinstance(raw, float | str) and float(raw) != int(float(raw)):
            raise ValueError
        value = kind(float(raw)) if kind is int else kind(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise ConfigError(f"{name}={raw!r}: expected {kind.__name__}") from None
    if kind is float and not math.isfinite(value):  # NaN passes no range check, inf passes >= 0
        raise ConfigError(f"{name}={raw!r}: expected a finite number")
    return value


def _augment(raw: Any) -> dict[str, Any]:
    """An `augment` value (a recipe name or a mapping) in its checked mapping form."""
    from ..data.recipes import normalize_augment

    try:
        return normalize_augment(raw)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _augment_key(augment: dict[str, Any], key: str, raw: Any) -> dict[str, Any]:
    """`augment` with one `augment.<...>` override applied (a later whole `augment` replaces)."""
    from ..data.recipes import set_augment_key

    try:
        return set_augment_key(augment, key.removeprefix("augment."), raw)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _check_augmentation(config: PretrainConfig) -> None:
    """The augmentation, stem and resolution resolve for the dataset (at its preset's size for
    image folders without `image_size`), naming the first setting that does not fit."""
    from ..models.backbones import STEMS
    from .data import resolved_augmentation

    _choice("stem", config.stem, STEMS)
    config.augment = _augment(config.augment)
    resolved_augmentation(config)


def _scalar(raw: Any) -> Any:
    """A loss option value: numbers and booleans from text, anything else as given."""
    if not isinstance(raw, str):
        return raw
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return float(raw) if any(c in raw for c in ".eE") or raw.lower() == "inf" else int(raw)
    except ValueError:
        return raw


def load_preset(path: str | Path) -> dict[str, Any]:
    """Read a YAML preset into raw key/value pairs."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
    return data


def parse_override(text: str) -> tuple[str, str]:
    """Split `key=value`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key=value")
    return key.strip().replace("-", "_"), value.strip()


def build_config(layers: Iterable[Mapping[str, Any]]) -> PretrainConfig:
    """Defaults, then each layer of raw values in order (preset, options, overrides), checked."""
    values: dict[str, Any] = {}
    loss_options: dict[str, Any] = {}
    for layer in layers:
        for key, raw in layer.items():
            key = key.replace("-", "_")
            value = parse_value(key, raw)
            if key.startswith("loss."):
                loss_options[key.removeprefix("loss.")] = value
            elif key.startswith("augment."):
                values["augment"] = _augment_key(values.get("augment", {}), key, value)
            elif key == "loss_options":
                loss_options.update(value)
            else:
                values[key] = value
    config = PretrainConfig(**values, loss_options=loss_options)
    return config.validate()
