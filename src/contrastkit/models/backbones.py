"""Backbones: image encoders mapping (B, C, H, W) float images to (B, feature_dim) features.

Every backbone is randomly initialised (no pretrained weights: self-supervised training starts
from scratch). The stem is `small` (stride 1, no max-pool, as in SimCLR's CIFAR variant, so that
32 px inputs keep enough spatial resolution), `imagenet` (the standard downsampling stem) or
`auto`: small below `SMALL_IMAGE_SIZE` pixels. Any timm or torchvision classification model is
available as `timm/<name>` or `torchvision/<name>` (see `library_backbones`); the built-in names
stay as they are.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..names import BACKBONE_NAMES
from .library_backbones import build_library_model, check_runs_on, split_name

BACKBONES = BACKBONE_NAMES  # the built-in names; timm/ and torchvision/ names besides
STEMS = ("auto", "small", "imagenet")

SMALL_IMAGE_SIZE = 64
"""Images smaller than this (in pixels) get a stride-1 stem and no max-pool."""

SMALL_CNN_WIDTHS = (32, 64, 128, 256)
"""Output channels of the four conv-BN-ReLU blocks of `small-cnn`; the last is its feature dim."""


class Backbone(nn.Module):
    """A named feature extractor: `body` maps images to (B, feature_dim) features.

    `source` says how to rebuild `body` outside contrastkit (library, name, kwargs; see
    `library_backbones.LibraryModel.source`), for exports.
    """

    def __init__(
        self,
        name: str,
        body: nn.Module,
        feature_dim: int,
        in_channels: int,
        source: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.feature_dim = feature_dim
        self.in_channels = in_channels
        self.source = source or {}

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} expects (B, {self.in_channels}, H, W) images, "
                f"got shape {tuple(images.shape)}"
            )
        return self.body(images)


def build_backbone(
    name: str,
    image_size: int,
    in_channels: int = 3,
    options: Mapping[str, Any] | None = None,
    stem: str = "auto",
) -> Backbone:
    """Build the backbone `name` (one of `BACKBONES`, or `timm/<name>` / `torchvision/<name>`
    with the model's keyword arguments `options`) for square images of `image_size` pixels,
    with the `stem` (one of `STEMS`; the built-in ResNets and EfficientNet)."""
    if split_name(name) is not None:
        model = build_library_model(name, in_channels, options or {})
        backbone = Backbone(name, model.body, model.feature_dim, in_channels, model.source)
        check_runs_on(backbone, name, in_channels, image_size)
        return backbone
    if options:
        raise ValueError(
            f"backbone options {sorted(options)} apply to timm/<name> and torchvision/<name> "
            f"backbones only, not to {name!r}"
        )
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
    small = image_size < SMALL_IMAGE_SIZE if stem == "auto" else stem == "small"
    if name == "small-cnn":
        body: nn.Module = _small_cnn(in_channels, small)
        feature_dim = SMALL_CNN_WIDTHS[-1]
    elif name == "efficientnet_b0":
        body, feature_dim = _efficientnet_b0(in_channels, small)
    else:
        body, feature_dim = _resnet(name, in_channels, small)
    source = {
        "library": "contrastkit",
        "name": name,
        "kwargs": {"image_size": image_size, "in_channels": in_channels},
    }
    return Backbone(name, body, feature_dim, in_channels, source)


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    """A bias-free "same"-padded conv (a BatchNorm follows), initialised as torchvision does."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _resnet(name: str, in_channels: int, small: bool) -> tuple[nn.Module, int]:
    """torchvision ResNet without its classifier; small images get a 3×3 stride-1 stem."""
    from torchvision import models

    net = getattr(models, name)(weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if small:
        net.conv1 = _conv(in_channels, net.conv1.out_channels, kernel_size=3, stride=1)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = _conv(in_channels, net.conv1.out_channels, kernel_size=7, stride=2)
    return net, feature_dim


def _efficientnet_b0(in_channels: int, small: bool) -> tuple[nn.Module, int]:
    """torchvision EfficientNet-B0 without its classifier; small images get a stride-1 stem."""
    from torchvision import models

    net = models.efficientnet_b0(weights=None)
    feature_dim = net.classifier[-1].in_features
    net.classifier = nn.Identity()
    stem = net.features[0]
    if small or in_channels != 3:
        stem[0] = _conv(in_channels, stem[0].out_channels, kernel_size=3, stride=1 if small else 2)
    return net, feature_dim


def _small_cnn(in_channels: int, small: bool) -> nn.Sequential:
    """Four conv-BN-ReLU blocks (`block1`..`block4`), then global average pooling.

    Blocks 2-4 halve the resolution, and so does block 1 from `SMALL_IMAGE_SIZE` pixels up. At
    32 px the last block works on 4×4 maps; 8 px inputs (digits) reach 1×1, which padded convs
    still accept.
    """
    blocks: dict[str, nn.Module] = {}
    width_in = in_channels
    for index, width in enumerate(SMALL_CNN_WIDTHS):
        stride = 1 if index == 0 and small else 2
        blocks[f"block{index + 1}"] = nn.Sequential(
            _conv(width_in, width, kernel_size=3, stride=stride),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        width_in = width
    blocks["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return nn.Sequential(OrderedDict(blocks))
