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

from ..errors import ContrastkitError
from ..names import BACKBONE_NAMES, METHOD_NAMES, OPTIMIZER_NAMES
from .optim_options import check_clip_and_weight_decay
from .options import check_head_options, check_optimisation_options

PRECISIONS = ("auto", "32", "bf16", "16")
LOGGERS = ("csv", "tensorboard", "wandb")
STL10_SPLITS = ("unlabeled+train", "unlabeled")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
NAMED_KEYS = ("method", "backbone", "optimizer", "precision", "loggers", "accelerator", "dataset")


def choices(key: str) -> tuple[str, ...]:
    """The valid values of `key`, one of NAMED_KEYS, read from the list that owns them."""
    if key == "dataset":
        from ..data.datasets import DATASET_NAMES

        return DATASET_NAMES
    return {
        "method": METHOD_NAMES,
        "backbone": BACKBONE_NAMES,
        "optimizer": OPTIMIZER_NAMES,
        "precision": PRECISIONS,
        "loggers": LOGGERS,
        "accelerator": ACCELERATORS,
    }[key]


_SIZES = (  # optional sizes; None picks a default
    "image_size",
    "local_size",
    "projector_hidden_dim",
    "projector_out_dim",
    "predictor_hidden_dim",
)


class ConfigError(ContrastkitError, ValueError):
    """A configuration value or key that cannot be used; the message is one line."""


@dataclass
class PretrainConfig:
    """Everything `contrastkit pretrain` needs; the defaults train SimCLR on `digits` on a CPU."""

    method: str = field(
        default="simclr", metadata={"help": "the method: which heads, pairing and default loss"}
    )
    loss: str | None = field(
        default=None, metadata={"help": "the loss, among the method's (`contrastkit losses`)"}
    )
    loss_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "loss hyperparameters, set as loss.<option>=value"}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "the loss's temperature (None: the loss's default)"}
    )
    dataset: str = field(default="digits", metadata={"help": "the dataset"})
    data_dir: str | None = field(
        default=None, metadata={"help": "folder holding the dataset (digits needs none)"}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "where decoded datasets are cached (None: $CONTRASTKIT_CACHE or ~/.cache)"
        },
    )
    download: bool = field(
        default=False, metadata={"help": "download a missing torchvision dataset"}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "train at this side: folders resized when decoded, in-memory data on the "
            "device (None: stored size)"
        },
    )
    backbone: str = field(default="small-cnn", metadata={"help": "the encoder network"})
    projector_hidden_dim: int | None = field(
        default=None, metadata={"help": "projector hidden width (None: the method's default)"}
    )
    projector_out_dim: int | None = field(
        default=None, metadata={"help": "projector output width (None: the method's default)"}
    )
    predictor_hidden_dim: int | None = field(
        default=None, metadata={"help": "predictor hidden width (None: the method's default)"}
    )
    epochs: int = field(default=30, metadata={"help": "training epochs"})
    batch_size: int = field(default=256, metadata={"help": "samples per step, over all devices"})
    micro_batch_size: int | None = field(
        default=None,
        metadata={"help": "gradient caching: the backbone holds this many samples at once"},
    )
    optimizer: str = field(default="sgd", metadata={"help": "the optimiser"})
    lr: float = field(default=0.3, metadata={"help": "peak learning rate (after warm-up)"})
    weight_decay: float = field(
        default=1e-4, metadata={"help": "weight decay (not on biases and norms)"}
    )
    momentum: float = field(default=0.9, metadata={"help": "SGD and LARS momentum"})
    warmup_epochs: float = field(
        default=2.0, metadata={"help": "linear warm-up length before the cosine decay, in epochs"}
    )
    fixed_predictor_lr: bool = field(
        default=False, metadata={"help": "keep the predictor's learning rate off the schedule"}
    )
    n_global: int = field(default=2, metadata={"help": "global (full-size) views per image"})
    n_local: int = field(default=0, metadata={"help": "local (small crop) views per image"})
    local_size: int | None = field(
        default=None, metadata={"help": "side of the local views (None: 96/224 of the image)"}
    )
    ema_base: float | None = field(
        default=None,
        metadata={
            "help": "EMA target's momentum at the start, to ema_final (None: the method's, 0.996 "
            "for dino, else 0.99)"
        },
    )
    gamma_decay_steps: int = field(
        default=0, metadata={"help": "steps over which the sigmoid loss's gamma decays (0: none)"}
    )
    skip_nonfinite: int = field(
        default=0,
        metadata={"help": "optimiser steps with a non-finite loss or gradient to skip, not fail"},
    )
    probe: bool = field(
        default=True, metadata={"help": "train an online linear probe on detached features"}
    )
    probe_lr: float = field(default=0.1, metadata={"help": "the online probe's learning rate"})
    val_fraction: float = field(
        default=0.0,
        metadata={
            "help": "last fraction of each class held out for the probe (0: train on all, the "
            "probe reports on the test split)"
        },
    )
    seed: int = field(default=0, metadata={"help": "random seed of weights, batches and views"})
    out: str = field(
        default="runs/pretrain", metadata={"help": "run folder: checkpoints, logs, config.yaml"}
    )
    resume: bool = field(
        default=False, metadata={"help": "continue from the newest good checkpoint in --out"}
    )
    accelerator: str = field(
        default="auto", metadata={"help": "device kind (auto: a GPU if there is one)"}
    )
    devices: int = field(default=1, metadata={"help": "devices per node (DDP when above 1)"})
    num_nodes: int = field(default=1, metadata={"help": "machines (DDP when above 1)"})
    sync_batchnorm: bool = field(
        default=False, metadata={"help": "batch-norm statistics over all devices"}
    )
    precision: str = field(
        default="32", metadata={"help": "numeric precision (auto: bf16 on a GPU, 32 on a CPU)"}
    )
    # Tensor cores want NHWC, and oneDNN's CPU convolutions ran small-cnn 1.15–1.3× faster in it
    # (8, 28 and 32 px, forward+backward, batch 256).
    channels_last: bool = field(
        default=True, metadata={"help": "NHWC memory layout for images and weights"}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the backbone"})
    loggers: str = field(default="csv,tensorboard", metadata={"help": "comma-separated loggers"})
    workers: int = field(
        default=2, metadata={"help": "data processes (decoding, streaming folders; 0: none)"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    # [runtime options]
    keep_host_memory: bool = field(
        default=True,
        metadata={
            "help": "keep freed host memory for the next step instead of returning it to the "
            "OS (glibc): no page faults on each step's activations; the process keeps its peak"
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "replace the checkpoints and logs of a run already in --out"},
    )
    log_every_n_steps: int = field(
        default=10,
        metadata={
            "help": "write the step's loss, lr and img/s every this many steps; reading them "
            "back waits for the device, so on a GPU the other steps never do"
        },
    )
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
    projector_layers: int | None = field(
        default=None, metadata={"help": "Linear layers in the projector (default: the method's)"}
    )
    projector_hidden_bn: bool | None = field(
        default=None, metadata={"help": "batch norm after each hidden layer of the projector"}
    )
    projector_out_bn: str | None = field(
        default=None,
        metadata={
            "help": "projector output batch norm: none, affine, nonaffine",
            "none_is_a_value": True,
        },
    )
    projector_bias: bool | None = field(
        default=None,
        metadata={"help": "biases on the projector's Linear layers (default: unless a BN follows)"},
    )
    predictor_layers: int | None = field(
        default=None, metadata={"help": "Linear layers in the predictor (default: the method's)"}
    )
    predictor_hidden_bn: bool | None = field(
        default=None, metadata={"help": "batch norm after each hidden layer of the predictor"}
    )
    predictor_out_bn: str | None = field(
        default=None,
        metadata={
            "help": "predictor output batch norm: none, affine, nonaffine",
            "none_is_a_value": True,
        },
    )
    predictor_bias: bool | None = field(
        default=None,
        metadata={"help": "biases on the predictor's Linear layers (default: unless a BN follows)"},
    )
    # [optimisation options]
    grad_clip: float | None = field(
        default=None,
        metadata={"help": "clip gradients to this norm before each optimiser step (None: off)"},
    )
    grad_clip_mode: str = field(
        default="global",
        metadata={
            "help": "global: one norm over all gradients (torch's clip_grad_norm_); "
            "per_parameter: each parameter's gradient on its own (DINO)"
        },
    )
    weight_decay_final: float | None = field(
        default=None,
        metadata={
            "help": "weight decay follows a per-step cosine from weight_decay to this (DINO: "
            "0.04 to 0.4; None: constant)"
        },
    )
    schedule: str = field(
        default="cosine", metadata={"help": "lr after warm-up: cosine, constant or step"}
    )
    schedule_interval: str = field(
        default="step", metadata={"help": "the lr changes every step, or every epoch"}
    )
    warmup_steps: int | None = field(
        default=None, metadata={"help": "warm-up length in steps; replaces warmup_epochs"}
    )
    warmup_start_lr: float | None = field(
        default=None,
        metadata={"help": "lr of the first warm-up step (default: lr / warm-up length)"},
    )
    warmup_ends_at_peak: bool = field(
        default=True,
        metadata={
            "help": "the last warm-up step runs at lr (false: the first step after it, as "
            "Hugging Face's schedules and SupContrast)"
        },
    )
    lr_final: float | None = field(
        default=None, metadata={"help": "lr the cosine ends at (absolute)"}
    )
    lr_final_ratio: float = field(
        default=0.0, metadata={"help": "lr the cosine ends at, as a fraction of lr"}
    )
    cosine_cycles: float = field(
        default=0.5,
        metadata={"help": "cosine cycles over the decay: 0.5 ends at lr_final, 0.3 at 34.5%"},
    )
    lr_milestones: str | None = field(
        default=None, metadata={"help": "schedule=step: comma-separated steps or epochs"}
    )
    lr_gamma: float = field(
        default=0.1, metadata={"help": "schedule=step: lr factor at each milestone"}
    )
    exclude_bias_norm: bool = field(
        default=True,
        metadata={"help": "biases and norm parameters get no weight decay and no LARS scaling"},
    )
    lars_eta: float = field(default=0.02, metadata={"help": "LARS trust coefficient"})
    lars_clip: bool = field(
        default=False,
        metadata={"help": "LARC form: η‖w‖/(‖g‖+wd‖w‖) as an lr, clipped at the base lr"},
    )
    adam_eps: float = field(default=1e-8, metadata={"help": "Adam/AdamW epsilon"})
    zero_init_residual: bool = field(
        default=False,
        metadata={"help": "zero the last BN scale of each ResNet residual block (SimSiam)"},
    )
    # [method options]
    center_momentum: float = field(
        default=0.9, metadata={"help": "dino: momentum of the centre of the teacher's outputs"}
    )
    teacher_temp_start: float = field(
        default=0.04,
        metadata={
            "help": "dino: teacher temperature where its warm-up starts (to loss.teacher_temp)"
        },
    )
    teacher_temp_warmup_epochs: int = field(
        default=0,
        metadata={"help": "dino: epochs of the teacher temperature's linear warm-up (per epoch)"},
    )
    teacher_temp_warmup_steps: int | None = field(
        default=None,
        metadata={"help": "dino: that warm-up in optimiser steps; replaces the epochs"},
    )
    freeze_last_layer_steps: int = field(
        default=0,
        metadata={"help": "dino: optimiser steps during which the head's last layer stays fixed"},
    )
    projector_bottleneck_dim: int | None = field(
        default=None,
        metadata={"help": "dino head: width of its L2-normalised bottleneck (None: 256)"},
    )
    prototypes: int = field(
        default=3000, metadata={"help": "SwAV: prototype vectors scored against the projections"}
    )
    freeze_prototypes_steps: int = field(
        default=0,
        metadata={"help": "SwAV: optimiser steps during which the prototypes stay fixed"},
    )
    sinkhorn_epsilon: float = field(
        default=0.05, metadata={"help": "SwAV: entropic regularisation of the Sinkhorn codes"}
    )
    sinkhorn_iterations: int = field(
        default=3, metadata={"help": "SwAV: Sinkhorn-Knopp iterations per step"}
    )
    swav_queue_size: int = field(
        default=0,
        metadata={"help": "SwAV: past global-view projections added to the codes' batch (0: off)"},
    )
    swav_queue_start_epoch: int = field(
        default=15, metadata={"help": "SwAV: first epoch whose projections enter the queue"}
    )
    views_in_one_batch: bool = field(
        default=False,
        metadata={"help": "views of one size pass the backbone together (BN statistics over all)"},
    )
    ema_final: float = field(default=1.0, metadata={"help": "EMA momentum at the end (cosine)"})
    ema_schedule: str = field(
        default="cosine",
        metadata={"help": "EMA momentum: cosine from ema_base to ema_final, or constant"},
    )
    ema_update_after_step: int = field(
        default=0, metadata={"help": "the EMA target copies the online network before this step"}
    )
    ema_update_every: int = field(
        default=1, metadata={"help": "optimiser steps between EMA updates"}
    )
    ema_buffers: str = field(
        default="copy", metadata={"help": "BN buffers of the EMA target: copy or average"}
    )
    queue_size: int | None = field(
        default=None, metadata={"help": "rows of the MoCo/NNCLR queue (None: the method's default)"}
    )
    pair_reduction: str | None = field(
        default=None,
        metadata={"help": "mean or sum of the view pairs' losses (None: the method's)"},
    )
    # [data options]
    # bytes loaded a 400x300 JPEG folder 2.6-3.1x (0 workers) and 1.3-1.6x (2) faster than pil
    # on the shared 2-core CPU (benchmarks/README.md, loader.py), and crops see the whole image.
    decode: str = field(
        default="bytes",
        metadata={
            "help": "streamed folders: bytes (workers read files; decoded whole on the training "
            "device, crops from whole images) or pil (workers decode, resize, centre-crop)"
        },
    )
    max_side: int | None = field(
        default=None,
        metadata={"help": "decode=bytes: images are shrunk to this longer side (None: 2 x size)"},
    )
    max_bad_fraction: float = field(
        default=0.01,
        metadata={"help": "stop when more than this fraction of files are unreadable (skipped)"},
    )
    stl10_split: str = field(
        default="unlabeled+train",
        metadata={"help": "STL-10 pretraining images: unlabeled, or unlabeled+train"},
    )
    # [evaluation options]
    log_spectrum: bool = field(
        default=True,
        metadata={"help": "log RankMe and α-ReQ of the probe split's features each epoch"},
    )
    # [backbone options]
    backbone_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "keyword arguments of a timm/ or torchvision/ backbone (backbone.<kwarg>)"
        },
    )
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "a local state dict (or `contrastkit export` file) to start the backbone"
        },
    )

    def validate(self) -> PretrainConfig:
        """Raise ConfigError naming the first invalid value and what would be valid."""
        _choice("method", self.method, METHOD_NAMES)
        if "/" not in self.backbone:  # timm/<name> and torchvision/<name>: check_backbone
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
        # The checks above need no torch, so argument errors answer before it loads.
        from ..data.datasets import DATASET_NAMES, canonical_name
        from ..losses import LOSS_MODULES
        from ..methods.spec import METHODS
        from .backbone_config import check_backbone

        spec = METHODS[self.method]
        if self.loss is not None:
            _choice("loss", self.loss, spec.losses, f" for method {self.method}")
        dataset = canonical_name(self.dataset)
        _choice("dataset", dataset, DATASET_NAMES)
        if self.n_global + self.n_local < spec.pairing.min_views:
            raise ConfigError(
                f"views={self.n_global + self.n_local} (n_global + n_local): "
                f"method {self.method} needs at least 2 views"
            )
        if spec.pairing.min_views > 1 and self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size}: contrastive training needs >= 2")
        if self.temperature is not None and not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature}: must be > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction}: must be in [0, 1)")
        if self.ema_base is not None and not 0.0 <= self.ema_base <= 1.0:
            raise ConfigError(f"ema_base={self.ema_base}: must be in [0, 1]")
        # [runtime checks]
        _at_least("log_every_n_steps", self.log_every_n_steps, 1)
        # [augmentation checks]
        _check_augmentation(self)
        # [head checks]
        check_head_options(self)
        # [optimisation checks]
        check_clip_and_weight_decay(self)
        check_optimisation_options(self)
        # [method checks]
        from ..methods.options import check_centering_options, check_method_options
        from ..methods.swav import check_swav_options

        try:
            check_centering_options(self)
            check_swav_options(self)
            check_method_options(self)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        # [data checks]
        _check_file_loading(self)
        _choice("stl10_split", self.stl10_split, STL10_SPLITS)
        # [evaluation checks]
        # [backbone checks]
        check_backbone(self.backbone, self.backbone_options, self.init_from)
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
        if self.gamma_decay_steps and "gamma_decay_steps" not in accepted:
            raise ConfigError(
                f"gamma_decay_steps={self.gamma_decay_steps}: {module.__name__} has no γ schedule"
            )
        try:  # the loss checks its own values (temperature > 0, chunk_size >= 1, ...)
            module(**self.loss_kwargs())
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{module.__name__}: {error}") from None

    def loss_kwargs(self) -> dict[str, Any]:
        """Loss constructor arguments: `loss_options` plus the `temperature` and
        `gamma_decay_steps` shortcuts."""
        kwargs = dict(self.loss_options)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.gamma_decay_steps:  # the sigmoid loss's own γ schedule
            kwargs["gamma_decay_steps"] = self.gamma_decay_steps
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
    if name.startswith(("loss.", "backbone.")):
        return _scalar(raw)
    if name.startswith("augment."):
        return raw  # checked with its key by data.recipes.set_augment_key
    if name == "augment":
        return _augment(raw)
    if name not in FIELDS:
        raise ConfigError(
            f"unknown config key {name!r}; valid: {', '.join(FIELDS)}, loss.<option>, "
            "backbone.<kwarg>, augment.<key>"
        )
    kind, optional = _field_type(name)
    # "none" means unset, except where it is one of the field's values (an output BN of none).
    unset_words = ("null",) if FIELDS[name].metadata.get("none_is_a_value") else ("none", "null")
    if raw is None or (isinstance(raw, str) and raw.lower() in unset_words):
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


def _check_file_loading(config: PretrainConfig) -> None:
    """decode, max_side and max_bad_fraction of streamed folders (data/file_loader.py)."""
    from ..data.file_loader import check_file_loading

    try:
        check_file_loading(config.decode, config.max_side, config.max_bad_fraction)
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
    """Read a YAML preset, given as a file path or a shipped preset's name (`cifar100_dhel`,
    `seed000/dhel`), into raw key/value pairs."""
    import yaml

    path = find_preset(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
    return data


def find_preset(name_or_path: str | Path) -> Path:
    """An existing YAML file, else the shipped preset of that name; else one line naming the
    closest preset names."""
    import difflib

    from ..presets import preset_names, preset_path

    path = Path(name_or_path)
    if path.is_file():
        return path
    found = preset_path(str(name_or_path))
    if found is not None:
        return found
    close = difflib.get_close_matches(str(name_or_path), preset_names(), n=4, cutoff=0.5)
    hint = f"closest presets: {', '.join(close)}" if close else "no preset has a similar name"
    raise ConfigError(
        f"config {str(name_or_path)!r} not found: neither a file nor a preset name; {hint} "
        "(the presets are the .yaml files under contrastkit/presets/)"
    )


def parse_override(text: str) -> tuple[str, str]:
    """Split `key=value`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key=value")
    return key.strip().replace("-", "_"), value.strip()


def build_config(layers: Iterable[Mapping[str, Any]]) -> PretrainConfig:
    """Defaults, then each layer of raw values in order (preset, options, overrides), checked.

    A later layer wins. `temperature`, `loss.temperature` and `loss_options: {temperature}`
    spell one value: within one layer they must agree, or ConfigError names both spellings.
    """
    values: dict[str, Any] = {}
    loss_options: dict[str, Any] = {}
    backbone_options: dict[str, Any] = {}
    for layer in layers:
        spelled: dict[str, tuple[str, Any]] = {}  # the layer's value of each field, and spelling
        for key, raw in layer.items():
            key = key.replace("-", "_")
            value = parse_value(key, raw)
            if key.startswith("augment."):
                values["augment"] = _augment_key(values.get("augment", {}), key, value)
                continue
            if key == "loss_options":
                pairs = [(f"loss_options.{k}", f"loss.{k}", v) for k, v in value.items()]
            else:
                pairs = [(key, key, value)]
            for spelling, name, item in pairs:
                if name == "loss.temperature":
                    name, item = "temperature", parse_value("temperature", item)
                _check_one_spelling(spelled, name, spelling, item)
                if name.startswith("loss."):
                    loss_options[name.removeprefix("loss.")] = item
                elif name.startswith("backbone."):
                    backbone_options[name.removeprefix("backbone.")] = item
                elif name == "backbone_options":
                    backbone_options.update(item)
                else:
                    values[name] = item
    config = PretrainConfig(**values, loss_options=loss_options, backbone_options=backbone_options)
    return config.validate()


def _check_one_spelling(
    spelled: dict[str, tuple[str, Any]], target: str, spelling: str, value: Any
) -> None:
    """Record `spelling=value` for `target`; ConfigError if another spelling gave another value."""
    earlier = spelled.setdefault(target, (spelling, value))
    if earlier[0] != spelling and earlier[1] != value:
        raise ConfigError(
            f"{earlier[0]}={earlier[1]} and {spelling}={value} set one value twice; give one"
        )
