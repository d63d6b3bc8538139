"""Build a run's Method from its configuration; Lightning-free so evaluation can rebuild it."""

from __future__ import annotations

from ..methods import METHODS, Method, build_method
from ..methods.options import ema_schedule
from ..models.backbones import build_backbone
from ..models.residual import zero_init_residual
from .config import PretrainConfig
from .options import head_overrides


def method_from_config(
    config: PretrainConfig, image_size: int, channels: int, num_classes: int
) -> Method:
    """The untrained Method `config` describes, for images of this size and channel count."""
    backbone = build_backbone(
        config.backbone, image_size, channels, config.backbone_options, config.stem
    )
    if config.zero_init_residual:
        zero_init_residual(backbone)
    method = build_method(
        config.method,
        backbone,
        loss=config.loss,
        loss_options=config.loss_kwargs(),
        n_global=config.n_global,
        num_classes=num_classes,
        projector_options=head_overrides(config, "projector"),
        predictor_options=head_overrides(config, "predictor"),
        ema=ema_schedule(config),
        queue_size=config.queue_size,
        pair_reduction=config.pair_reduction,
        pairing=METHODS[config.method].pairing.from_config(config),
    )
    method.views_in_one_batch = config.views_in_one_batch
    return method
