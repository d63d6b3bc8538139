"""Pretraining with a timm ViT on digits, exporting it to plain timm, starting from local weights
(`init_from`), and the configuration of library backbones (`backbone.<kwarg>` keys)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contrastkit import cli
from contrastkit.eval import load_encoder
from contrastkit.export import export_backbone
from contrastkit.models import build_backbone
from contrastkit.train.config import ConfigError, build_config, load_preset
from contrastkit.train.run import build_module, pretrain

from .small_run import small_config

timm = pytest.importorskip("timm")

VIT = "timm/vit_tiny_patch16_224"
PRESETS = Path(__file__).resolve().parents[2] / "src" / "contrastkit" / "presets"
# 4-px patches on 8-px digits: 4 tokens and the CLS token; 2 blocks keep the epoch short.
VIT_KEYS = {"backbone.img_size": 8, "backbone.patch_size": 4, "backbone.depth": 2}


def fresh_vit_weights(path: Path, seed: int, **options: int) -> dict[str, torch.Tensor]:
    """Save a newly initialised ViT body's state dict (as a file from elsewhere would be)."""
    torch.manual_seed(seed)
    kwargs = {k.removeprefix("backbone."): v for k, v in VIT_KEYS.items()} | options
    body = timm.create_model("vit_tiny_patch16_224", in_chans=1, **kwargs)
    state = body.state_dict()
    torch.save(state, path)
    return state


@pytest.mark.slow
def test_the_vit_tiny_preset_trains_a_digits_epoch_and_exports_to_plain_timm(tmp_path) -> None:
    """The ViT-Tiny CIFAR-10 DINO preset on digits (8 px, 4-px patches, 2 blocks, a narrow
    head) with two 4-px local views, on the CPU, from a local start (`init_from`)."""
    start = fresh_vit_weights(tmp_path / "start.pt", seed=5, num_classes=0, drop_path_rate=0.1)
    small = small_config(tmp_path / "run").to_dict()
    on_digits = {k: small[k] for k in ("dataset", "epochs", "batch_size", "loggers", "progress")}
    on_digits |= {"out": small["out"], "precision": "32", "warmup_epochs": 0.5}
    on_digits |= {"n_local": 2, "local_size": 4}  # multi-crop: 4-px views of one patch
    on_digits |= {"projector_hidden_dim": 256, "projector_out_dim": 512}  # a narrow DINO head
    on_digits["init_from"] = str(tmp_path / "start.pt")
    config = build_config([load_preset(PRESETS / "vit_tiny_cifar10.yaml"), on_digits, VIT_KEYS])
    assert (config.method, config.optimizer, config.backbone) == ("dino", "adamw", VIT)
    assert config.backbone_options == {
        "img_size": 8,
        "patch_size": 4,
        "depth": 2,
        "drop_path_rate": 0.1,
    }
    result = pretrain(config)
    assert math.isfinite(result.metrics["train/loss_epoch"])

    exported = torch.load(export_backbone(str(result.checkpoint), tmp_path / "vit.pt"))
    assert (exported["library"], exported["name"]) == ("timm", "vit_tiny_patch16_224")
    changed = [k for k, v in exported["state_dict"].items() if not torch.equal(v, start[k])]
    assert "blocks.0.attn.qkv.weight" in changed  # trained, from the given start

    net = timm.create_model(exported["name"], **exported["kwargs"]).eval()
    net.load_state_dict(exported["state_dict"])
    ours = load_encoder(str(result.checkpoint)).backbone.cpu().eval()
    images = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(images), ours(images))


def test_init_from_loads_the_file_into_the_backbone_ignoring_its_classifier(tmp_path) -> None:
    """A file from a model with a 10-class head (as a pretrained file has) starts the backbone."""
    start = fresh_vit_weights(tmp_path / "start.pt", seed=7, num_classes=10)
    assert "head.weight" in start
    config = small_config(tmp_path / "run", backbone=VIT, init_from=str(tmp_path / "start.pt"))
    config = build_config([{**config.to_dict(), **VIT_KEYS}])
    body = build_module(config).method.backbone.body
    loaded = body.state_dict()
    assert loaded.keys() == start.keys() - {"head.weight", "head.bias"}
    for key, value in loaded.items():
        assert torch.equal(value, start[key]), key
    without = build_module(build_config([{**config.to_dict(), "init_from": None}]))
    assert not torch.equal(without.method.backbone.body.pos_embed, start["pos_embed"])


def test_init_from_a_file_that_does_not_fit_names_the_first_misfit(tmp_path: Path) -> None:
    fresh_vit_weights(tmp_path / "wide.pt", seed=0, embed_dim=96, num_heads=3)
    config = build_config(
        [
            {
                "backbone": VIT,
                "init_from": str(tmp_path / "wide.pt"),
                "out": str(tmp_path),
                **VIT_KEYS,
            }
        ]
    )
    with pytest.raises(ConfigError, match=r"init_from=.*wide.pt.*of wrong shape, e.g. "):
        build_module(config)


def test_backbone_keys_fill_backbone_options_over_a_preset_mapping() -> None:
    config = build_config(
        [
            {"backbone": VIT, "backbone_options": {"img_size": 8, "patch_size": 8}},
            {"backbone.patch_size": "4", "backbone.qkv_bias": "false"},
        ]
    )
    assert config.backbone_options == {"img_size": 8, "patch_size": 4, "qkv_bias": False}
    with pytest.raises(ConfigError, match=r"backbone\.depth=2: backbone options apply"):
        build_config([{"backbone": "small-cnn", "backbone.depth": 2}])
    backbone = build_backbone(VIT, 8, 1, config.backbone_options)
    assert backbone.body.patch_embed.proj.kernel_size == (4, 4)
    assert backbone.body.blocks[0].attn.qkv.bias is None


def test_an_unknown_backbone_is_one_line_with_close_matches_and_exit_code_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contrastkit.cli", "pretrain", "--backbone", "torchvision/resnt18"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "close matches: torchvision/resnet18" in result.stderr


def test_a_library_backbone_that_does_not_fit_the_data_is_one_line_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["pretrain", "--backbone", "timm/vit_tiny_patch16_224", "--out", str(out)]
    assert cli.main(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("contrastkit: error: timm/vit_tiny_patch16_224 does not run on 8x8 ")
    assert not (out / "config.yaml").exists()


@pytest.mark.parametrize(("local_size", "refused"), [(6, True), (4, False)])
def test_local_views_the_backbone_cannot_take_are_refused_before_training(
    tmp_path: Path, local_size: int, refused: bool
) -> None:
    """A ViT with 4 px patches on 8 px digits: 6 px local crops do not tile, 4 px ones do."""
    values = {
        "backbone": "timm/vit_tiny_patch16_224",
        "backbone.img_size": 8,
        "backbone.patch_size": 4,
        "backbone.depth": 1,
        "n_local": 2,
        "local_size": local_size,
        "out": str(tmp_path),
    }
    config = build_config([values])
    if not refused:
        assert build_module(config).method.backbone.training
        return
    with pytest.raises(ConfigError, match=r"does not run on 6x6 images of 1 channel\(s\): "):
        build_module(config)
