"""Backbones: output shapes, stem choice by image size, input channels, names, memory format."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import contrastkit
from contrastkit.models import BACKBONES, SMALL_IMAGE_SIZE, Backbone, build_backbone

FEATURE_DIMS = {"resnet18": 512, "resnet50": 2048, "efficientnet_b0": 1280, "small-cnn": 256}
SHAPE_CASES = [(name, size) for name in BACKBONES for size in (32, 96)] + [("small-cnn", 8)]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_every_backbone_has_a_documented_feature_dim() -> None:
    assert set(BACKBONES) == set(FEATURE_DIMS)


@pytest.mark.parametrize(("name", "size"), SHAPE_CASES)
def test_output_is_batch_by_feature_dim(name: str, size: int) -> None:
    backbone = build_backbone(name, size).eval()
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, size, size))
    assert isinstance(backbone, Backbone)
    assert backbone.name == name
    assert backbone.feature_dim == FEATURE_DIMS[name]
    assert features.shape == (2, FEATURE_DIMS[name])
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("size", [8, 32, SMALL_IMAGE_SIZE - 1])
def test_resnet_small_images_get_a_3x3_stride_1_stem_without_maxpool(name: str, size: int) -> None:
    net = build_backbone(name, size).body
    assert (net.conv1.in_channels, net.conv1.out_channels) == (3, 64)
    assert net.conv1.kernel_size == (3, 3)
    assert net.conv1.stride == (1, 1)
    assert net.conv1.padding == (1, 1)
    assert net.conv1.bias is None
    assert isinstance(net.maxpool, nn.Identity)
    assert isinstance(net.fc, nn.Identity)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("size", [SMALL_IMAGE_SIZE, 96])
def test_resnet_large_images_keep_the_7x7_stride_2_stem_and_maxpool(name: str, size: int) -> None:
    net = build_backbone(name, size).body
    assert net.conv1.kernel_size == (7, 7)
    assert net.conv1.stride == (2, 2)
    assert isinstance(net.maxpool, nn.MaxPool2d)
    assert isinstance(net.fc, nn.Identity)


@pytest.mark.parametrize(("size", "stride"), [(32, 1), (SMALL_IMAGE_SIZE - 1, 1), (64, 2), (96, 2)])
def test_efficientnet_stem_stride_depends_on_image_size(size: int, stride: int) -> None:
    net = build_backbone("efficientnet_b0", size).body
    stem = net.features[0][0]
    assert stem.kernel_size == (3, 3)
    assert stem.stride == (stride, stride)
    assert (stem.in_channels, stem.out_channels) == (3, 32)
    assert isinstance(net.classifier, nn.Identity)


@pytest.mark.parametrize(("size", "stride"), [(8, 1), (SMALL_IMAGE_SIZE - 1, 1), (64, 2)])
def test_small_cnn_structure(size: int, stride: int) -> None:
    net = build_backbone("small-cnn", size).body
    convs = [module for module in net.modules() if isinstance(module, nn.Conv2d)]
    assert [(conv.in_channels, conv.out_channels) for conv in convs] == [
        (3, 32),
        (32, 64),
        (64, 128),
        (128, 256),
    ]
    assert [conv.stride for conv in convs] == [(stride, stride), (2, 2), (2, 2), (2, 2)]
    assert sum(isinstance(module, nn.BatchNorm2d) for module in net.modules()) == 4


@pytest.mark.parametrize("name", BACKBONES)
def test_single_channel_images(name: str) -> None:
    backbone = build_backbone(name, 32, in_channels=1).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 1, 32, 32))
    assert features.shape == (1, FEATURE_DIMS[name])


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_single_channel_large_images_keep_the_downsampling_stem(name: str) -> None:
    net = build_backbone(name, 64, in_channels=1).body
    stem = net.conv1 if name == "resnet18" else net.features[0][0]
    assert stem.in_channels == 1
    assert stem.stride == (2, 2)
    assert stem.kernel_size == ((7, 7) if name == "resnet18" else (3, 3))


def test_small_cnn_trains_on_grayscale_8px_digits() -> None:
    backbone = build_backbone("small-cnn", 8, in_channels=1)
    backbone(torch.randn(4, 1, 8, 8)).pow(2).mean().backward()
    first_conv = backbone.body.block1[0]
    assert first_conv.weight.grad is not None
    assert first_conv.weight.grad.abs().sum() > 0


def test_unknown_name_is_a_one_line_error_naming_it_and_the_valid_names() -> None:
    with pytest.raises(ValueError, match="'vit_b16'") as error:
        build_backbone("vit_b16", 32)
    message = str(error.value)
    assert "\n" not in message
    assert all(name in message for name in BACKBONES)


@pytest.mark.parametrize(("size", "channels"), [(0, 3), (32, 0)])
def test_bad_sizes_are_rejected(size: int, channels: int) -> None:
    with pytest.raises(ValueError, match=str(min(size, channels))):
        build_backbone("small-cnn", size, in_channels=channels)


def test_wrong_channel_count_is_rejected_with_the_shape() -> None:
    backbone = build_backbone("small-cnn", 32, in_channels=1)
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\)"):
        backbone(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("name", BACKBONES)
def test_channels_last_input_gives_the_same_features(name: str) -> None:
    backbone = build_backbone(name, 32).eval()
    images = torch.randn(1, 3, 32, 32)
    channels_last = images.contiguous(memory_format=torch.channels_last)
    assert not channels_last.is_contiguous()
    with torch.no_grad():
        expected = backbone(images)
        actual = backbone(channels_last)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_importing_models_does_not_import_torchvision() -> None:
    src = str(Path(contrastkit.__file__).parents[1])
    code = "import sys, contrastkit.models; assert 'torchvision' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": src}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_stem_option_overrides_the_size_rule(name: str) -> None:
    """`imagenet` keeps the 7×7/2 + max-pool stem at 32 px, `small` drops it at 224 px."""
    standard = build_backbone(name, 32, stem="imagenet").body
    assert (standard.conv1.kernel_size, standard.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(standard.maxpool, nn.MaxPool2d)
    small = build_backbone(name, 224, stem="small").body
    assert (small.conv1.kernel_size, small.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(small.maxpool, nn.Identity)
    auto = build_backbone(name, 224, stem="auto").body
    assert auto.conv1.kernel_size == (7, 7)


def test_stem_decides_the_feature_map_resolution() -> None:
    """A 32 px image reaches the last stage at 4×4 with the small stem, 1×1 with the standard."""
    images = torch.randn(2, 3, 32, 32)
    for stem, side in (("small", 4), ("imagenet", 1)):
        net = build_backbone("resnet18", 32, stem=stem).body.eval()
        x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        assert x.shape[-2:] == (side, side), stem
    with pytest.raises(ValueError, match="unknown stem 'tiny'"):
        build_backbone("resnet18", 32, stem="tiny")
