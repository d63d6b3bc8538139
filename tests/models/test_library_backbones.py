"""timm/<name> and torchvision/<name> backbones: classifier removed, feature width found, ViTs
give their CLS features at any image size, and an export rebuilds in the plain library."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from contrastkit.export import backbone_export
from contrastkit.models import build_backbone
from contrastkit.models.library_backbones import BackboneNameError, check_library_backbone

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

VIT = "timm/vit_tiny_patch16_224"
VIT_OPTIONS = {"img_size": 8, "patch_size": 4, "depth": 2}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_timm_vit_gives_its_cls_token_features_at_several_image_sizes() -> None:
    """Multi-crop: 8 px global and 4 px local views both pass (dynamic_img_size)."""
    backbone = build_backbone(VIT, 8, in_channels=1, options=VIT_OPTIONS).eval()
    assert backbone.feature_dim == 192
    assert backbone.source["kwargs"]["dynamic_img_size"] is True
    with torch.no_grad():
        for size in (8, 4, 12):
            images = torch.randn(3, 1, size, size)
            features = backbone(images)
            tokens = backbone.body.forward_features(images)
            torch.testing.assert_close(features, tokens[:, 0])  # the CLS token, normalised
            assert features.shape == (3, 192)


def test_timm_convnet_has_no_classifier_and_its_pooled_width() -> None:
    backbone = build_backbone("timm/resnet18", 32, options={"drop_rate": 0.1})
    assert backbone.feature_dim == 512 and isinstance(backbone.body.fc, nn.Identity)
    assert "dynamic_img_size" not in backbone.source["kwargs"]
    assert backbone.source["kwargs"]["drop_rate"] == 0.1
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def rebuild_in_plain_library(export: dict) -> nn.Module:
    """The model from an export's library, name and kwargs alone, with its weights."""
    if export["library"] == "timm":
        net = timm.create_model(export["name"], **export["kwargs"])
    else:
        net = torchvision.models.get_model(export["name"], **export["kwargs"])
        if export["first_conv"] is not None:
            old = net.get_submodule(export["first_conv"])
            conv = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding)
            conv.bias = None if old.bias is None else conv.bias
            set_submodule(net, export["first_conv"], conv)
        set_submodule(net, export["classifier"], nn.Identity())
    net.load_state_dict(export["state_dict"])
    return net.eval()


def set_submodule(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


@pytest.mark.parametrize(
    ("name", "options", "channels", "size", "width", "classifier"),
    [
        ("torchvision/resnet18", {}, 1, 32, 512, "fc"),
        ("torchvision/convnext_tiny", {"stochastic_depth_prob": 0.1}, 3, 32, 768, "classifier.2"),
        (VIT, VIT_OPTIONS, 1, 8, 192, None),
    ],
)
def test_a_built_backbone_exports_and_rebuilds_in_the_plain_library_with_equal_features(
    name: str, options: dict, channels: int, size: int, width: int, classifier: str | None
) -> None:
    backbone = build_backbone(name, size, in_channels=channels, options=options).eval()
    assert backbone.feature_dim == width
    export = backbone_export(backbone)
    assert (export["library"], export["name"]) == tuple(name.split("/"))
    assert export["classifier"] == classifier
    with torch.no_grad():  # train-mode weights differ from init: BN statistics, a random step
        for p in backbone.parameters():
            p.add_(0.01 * torch.randn_like(p))
    export = backbone_export(backbone)
    images = torch.randn(2, channels, size, size)
    with torch.no_grad():
        ours = backbone(images)
        assert ours.shape == (2, width)
        torch.testing.assert_close(rebuild_in_plain_library(export)(images), ours)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("timm/vit_tiny_patch16_22", {}, "close matches: timm/vit_tiny_patch16_224"),
        ("torchvision/resnet81", {}, "close matches: torchvision/resnet18"),
        ("torchvision/resnet18", {"pretrained": True}, "unexpected keyword"),
        ("torchvision/resnet18", {"weights": "DEFAULT"}, "backbone.weights='DEFAULT'"),
        ("timm/resnet18", {"num_classes": 5}, "backbone.num_classes=5"),
    ],
)
def test_unknown_names_and_arguments_are_one_line_errors(name, options, message) -> None:
    with pytest.raises(BackboneNameError, match=message) as error:
        build_backbone(name, 32, options=options)
    assert "\n" not in str(error.value)


def test_without_timm_a_timm_name_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(BackboneNameError, match=r"pip install 'contrastkit\[timm\]'"):
        build_backbone("timm/resnet18", 32)


def test_builtin_names_refuse_library_options() -> None:
    with pytest.raises(ValueError, match="timm/<name> and torchvision/<name>"):
        build_backbone("small-cnn", 8, options={"depth": 2})


def test_the_check_builds_on_the_meta_device_or_the_cpu_for_models_that_need_it() -> None:
    """RegNet's constructor copies tensor values, which the meta device refuses."""
    with pytest.raises(RuntimeError, match="meta"), torch.device("meta"):
        torchvision.models.regnet_y_400mf()
    check_library_backbone("torchvision/regnet_y_400mf", {})
    with pytest.raises(BackboneNameError, match="bogus"):
        check_library_backbone("torchvision/regnet_y_400mf", {"bogus": 1})


def test_a_model_that_does_not_fit_the_image_size_is_refused_when_built() -> None:
    """A ViT whose patches do not tile the images fails at build time with one line, not at the
    first training step with timm's assertion; with fitting size options it builds."""
    with pytest.raises(BackboneNameError) as error:
        build_backbone(VIT, 8, in_channels=1, options={"depth": 2})
    message = str(error.value)
    assert message.startswith(f"{VIT} does not run on 8x8 images of 1 channel(s): ")
    assert "patch size (16)" in message and "\n" not in message
    assert build_backbone(VIT, 8, in_channels=1, options=VIT_OPTIONS).feature_dim == 192


def test_the_build_time_forward_moves_no_batch_statistics_and_keeps_training_mode() -> None:
    backbone = build_backbone("torchvision/resnet18", 16)
    norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert backbone.training and norms
    assert all(int(m.num_batches_tracked) == 0 and not m.running_mean.any() for m in norms)
