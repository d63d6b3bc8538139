"""The fully resolved configuration: every key with the value a run will use, defaults of the
method's heads and of its loss filled in, under the names users type (`--print-config`)."""

from __future__ import annotations

import inspect
from typing import Any

from .config import PretrainConfig
from .options import head_overrides


def resolved_values(config: PretrainConfig) -> dict[str, Any]:
    """`config` as a dict, with the loss's name, temperature and options, the heads' shapes and
    every view's augmentation resolved from the method's and the dataset's defaults.
    `*_hidden_dim: null` means the backbone's feature dim, `*_bias: null` a bias wherever no BN
    follows."""
    from ..losses import LOSS_MODULES
    from ..methods.options import ema_base
    from ..methods.spec import METHODS

    values = config.to_dict()
    spec = METHODS[config.method]
    values["ema_base"] = ema_base(config)
    loss = config.loss or spec.default_loss
    values["loss"] = loss
    if loss in LOSS_MODULES:
        parameters = inspect.signature(LOSS_MODULES[loss]).parameters.values()
        options = {p.name: p.default for p in parameters if p.default is not p.empty}
        options.pop("gather", None)
        options.update(config.loss_kwargs())
        values["temperature"] = options.pop("temperature", None)
        values["loss_options"] = options
    for head, preset in (("projector", spec.projector), ("predictor", spec.predictor)):
        values.update(_head_values(config, head, preset))
    values["augment"] = _augment_values(config)
    return values


def _augment_values(config: PretrainConfig) -> dict[str, Any]:
    """Every view's settings as a mapping `augment` accepts: `{view1: {...}, view2: {...}}`
    (views numbered from 1, global views first), so a printed configuration reads back as is."""
    from .data import resolved_augmentation

    views = resolved_augmentation(config)
    return {
        f"view{view['view']}": {k: v for k, v in view.items() if k not in ("view", "group")}
        for view in views
    }


def _head_values(config: PretrainConfig, head: str, preset: str | None) -> dict[str, Any]:
    from ..models.heads import DINOHeadSpec, head_spec

    if preset is None:
        return {}
    shape = head_spec(preset, **head_overrides(config, head))
    if isinstance(shape, DINOHeadSpec):
        return {
            f"{head}_layers": shape.num_layers,
            f"{head}_hidden_dim": shape.hidden_dim,
            f"{head}_out_dim": shape.out_dim,
            f"{head}_bottleneck_dim": shape.bottleneck_dim,
        }
    values = {
        f"{head}_layers": shape.num_layers,
        f"{head}_hidden_dim": shape.hidden_dim,
        f"{head}_hidden_bn": shape.batch_norm,
        f"{head}_out_bn": shape.out_bn or ("nonaffine" if shape.last_bn else "none"),
        f"{head}_bias": shape.bias,
    }
    if head == "projector":  # the predictor's output is the projector's
        values[f"{head}_out_dim"] = shape.out_dim
    return values
