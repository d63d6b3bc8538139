"""Build a run's Method from its configuration; Lightning-free so evaluation can rebuild it."""

from __future__ import annotations

from ..methods import Method, build_method
from ..models.backbones import build_backbone
from .config import PretrainConfig


def method_from_config(
    config: PretrainConfig, image_size: int, channels: int, num_classes: int
) -> Method:
    """The untrained Method `config` describes, for images of this size and channel count."""
    projector = {
        key: value
        for key, value in (
            ("hidden_dim", config.projector_hidden_dim),
            ("out_dim", config.projector_out_dim),
        )
        if value is not None
    }
    predictor = {"hidden_dim": config.predictor_hidden_dim} if config.predictor_hidden_dim else None
    return build_method(
        config.method,
        build_backbone(config.backbone, image_size, channels, config.stem),
        loss=config.loss,
        loss_options=config.loss_kwargs(),
        n_global=config.n_global,
        num_classes=num_classes,
        projector_options=projector,
        predictor_options=predictor,
        ema_base=config.ema_base,
        gamma_decay_steps=config.gamma_decay_steps,
    )
