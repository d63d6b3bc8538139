"""The head, optimisation and method options of a PretrainConfig: their checks, and what they
mean for the builders. Torch-free, so a bad value answers at once.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import PretrainConfig

SCHEDULES = ("cosine", "constant", "step")
SCHEDULE_INTERVALS = ("step", "epoch")
_RESIDUAL_BACKBONES = ("resnet18", "resnet50")


def _error(message: str) -> Exception:
    from .config import ConfigError

    return ConfigError(message)


def _one_of(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise _error(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def check_head_options(config: PretrainConfig) -> None:
    """Layers >= 1, a known output BN, and only options the method's heads have."""
    from ..methods.spec import METHODS
    from ..models.heads import OUT_BN, head_spec

    for head in ("projector", "predictor"):
        layers = getattr(config, f"{head}_layers")
        if layers is not None and layers < 1:
            raise _error(f"{head}_layers={layers}: must be >= 1")
        out_bn = getattr(config, f"{head}_out_bn")
        if out_bn is not None:
            _one_of(f"{head}_out_bn", out_bn, OUT_BN)
    spec = METHODS[config.method]
    for head, preset in (("projector", spec.projector), ("predictor", spec.predictor)):
        if preset is None:
            continue
        for key, value in head_overrides(config, head).items():
            try:
                head_spec(preset, **{key: value})
            except TypeError:
                raise _error(
                    f"{head_keys(head)[key]}={value}: the {preset} head has no such option"
                ) from None


def head_keys(head: str) -> dict[str, str]:
    """The config key of each head field, for `head` "projector" or "predictor"."""
    fields = ("hidden_dim", "out_dim", "num_layers", "batch_norm", "out_bn", "bias")
    suffixes = ("hidden_dim", "out_dim", "layers", "hidden_bn", "out_bn", "bias")
    keys = {field: f"{head}_{suffix}" for field, suffix in zip(fields, suffixes, strict=True)}
    if head == "projector":  # the DINO head's own
        keys["bottleneck_dim"] = "projector_bottleneck_dim"
        keys["freeze_steps"] = "freeze_last_layer_steps"
    return keys


def head_overrides(config: PretrainConfig, head: str) -> dict[str, Any]:
    """The head fields `config` sets for `head` ("projector" or "predictor"); a freeze of 0
    steps sets nothing."""
    values = {field: getattr(config, key, None) for field, key in head_keys(head).items()}
    if not values.get("freeze_steps"):
        values.pop("freeze_steps", None)
    return {key: value for key, value in values.items() if value is not None}


def parse_milestones(text: str) -> tuple[int, ...]:
    """'60,80' (or a YAML list read as text, '[60, 80]') as increasing whole numbers."""
    parts = [p.strip() for p in text.strip("[]() ").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise _error(f"lr_milestones={text!r}: expected comma-separated whole numbers") from None
    if not values or any(b <= a for a, b in itertools.pairwise(values)) or values[0] < 1:
        raise _error(f"lr_milestones={text!r}: expected increasing whole numbers >= 1, e.g. 60,80")
    return values


def check_optimisation_options(config: PretrainConfig) -> None:
    """Known schedule and interval, consistent warm-up and final lr, valid LARS and init."""
    _one_of("schedule", config.schedule, SCHEDULES)
    _one_of("schedule_interval", config.schedule_interval, SCHEDULE_INTERVALS)
    if config.warmup_steps is not None:
        if config.warmup_steps < 0:
            raise _error(f"warmup_steps={config.warmup_steps}: must be >= 0")
        if config.schedule_interval == "epoch":
            raise _error(
                f"warmup_steps={config.warmup_steps}: the schedule steps per epoch; "
                "give warmup_epochs, or schedule_interval=step"
            )
    if config.schedule_interval == "epoch" and config.warmup_epochs != int(config.warmup_epochs):
        raise _error(
            f"warmup_epochs={config.warmup_epochs}: a per-epoch schedule needs whole epochs"
        )
    for name in ("warmup_start_lr", "lr_final"):
        value = getattr(config, name)
        if value is not None and not 0 <= value <= config.lr:
            raise _error(f"{name}={value}: must be in [0, lr={config.lr}]")
    if not 0 <= config.lr_final_ratio <= 1:
        raise _error(f"lr_final_ratio={config.lr_final_ratio}: must be in [0, 1]")
    if config.lr_final is not None and config.lr_final_ratio:
        raise _error(
            f"lr_final={config.lr_final} and lr_final_ratio={config.lr_final_ratio}: give one"
        )
    if not config.cosine_cycles > 0:
        raise _error(f"cosine_cycles={config.cosine_cycles}: must be > 0 (0.5 = half a cosine)")
    if config.schedule == "step":
        if config.lr_milestones is None:
            raise _error("schedule=step needs lr_milestones, e.g. lr_milestones=60,80")
        parse_milestones(config.lr_milestones)
    elif config.lr_milestones is not None:
        raise _error(f"lr_milestones={config.lr_milestones!r}: only schedule=step uses them")
    if not 0 < config.lr_gamma <= 1:
        raise _error(f"lr_gamma={config.lr_gamma}: must be in (0, 1]")
    if not config.lars_eta > 0:
        raise _error(f"lars_eta={config.lars_eta}: must be > 0")
    if not config.adam_eps > 0:
        raise _error(f"adam_eps={config.adam_eps}: must be > 0")
    if config.zero_init_residual and config.backbone not in _RESIDUAL_BACKBONES:
        raise _error(
            f"zero_init_residual=true: backbone {config.backbone} has no residual blocks; "
            f"valid with {', '.join(_RESIDUAL_BACKBONES)}"
        )
