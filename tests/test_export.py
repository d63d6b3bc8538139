"""A pretrained backbone exported alone loads into plain torchvision and computes the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from contrastkit.eval import load_encoder
from contrastkit.export import ExportError, export_backbone, sidecar_path
from contrastkit.train.config import build_config
from contrastkit.train.run import pretrain


@pytest.mark.slow
def test_exported_resnet18_loads_into_torchvision(tmp_path: Path) -> None:
    config = build_config(
        [
            {
                "backbone": "resnet18",
                "epochs": 1,
                "batch_size": 256,
                "projector_hidden_dim": 64,
                "projector_out_dim": 32,
                "val_fraction": 0.0,
                "loggers": "csv",
                "progress": False,
                "out": str(tmp_path / "run"),
            }
        ]
    )
    checkpoint = pretrain(config).checkpoint
    exported = torch.load(export_backbone(str(checkpoint), tmp_path / "backbone.pt"))
    assert {k: exported[k] for k in ("library", "name")} == {
        "library": "contrastkit",
        "name": "resnet18",
    }
    weights = exported["state_dict"]

    # The README's recipe: torchvision's ResNet-18 with the small-image stem, no classifier.
    net = torchvision.models.resnet18()
    net.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)  # digits are grayscale
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.load_state_dict(weights)

    ours = load_encoder(str(checkpoint)).backbone
    images = torch.randn(4, 1, 8, 8)
    net.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(images), ours(images))


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    config = build_config(
        [{"epochs": 1, "batch_size": 512, "loggers": "csv", "progress": False, "out": str(out)}]
    )
    return pretrain(config).checkpoint


def _features_of(checkpoint: Path, images: torch.Tensor) -> torch.Tensor:
    backbone = load_encoder(str(checkpoint)).backbone.cpu().eval()
    with torch.no_grad():
        return backbone(images)


def _images() -> torch.Tensor:
    return torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_sidecar_says_how_to_rebuild_and_feed_the_backbone(
    digits_checkpoint: Path, tmp_path: Path
) -> None:
    from contrastkit.data.presets import DATASETS
    from contrastkit.models import build_backbone

    out = export_backbone(str(digits_checkpoint), tmp_path / "backbone.pt")
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar_path(out).name == "backbone.pt.json"
    assert sidecar["backbone"] == "small-cnn" and sidecar["feature_dim"] == 256
    assert sidecar["input"]["shape"] == ["batch", 1, 8, 8]
    digits = DATASETS["digits"]  # what training normalised with
    assert sidecar["normalization"] == {"mean": list(digits.mean), "std": list(digits.std)}
    # The README's small-cnn recipe: rebuild it from the sidecar, load the weights.
    backbone = build_backbone(sidecar["backbone"], **sidecar["backbone_options"])
    backbone.body.load_state_dict(torch.load(out)["state_dict"])
    backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            backbone(_images()), _features_of(digits_checkpoint, _images()), rtol=0, atol=0
        )


def test_torchscript_export_computes_the_backbones_features(
    digits_checkpoint: Path, tmp_path: Path
) -> None:
    out = export_backbone(str(digits_checkpoint), tmp_path / "backbone.ts", "torchscript")
    loaded = torch.jit.load(str(out))
    with torch.no_grad():
        difference = (loaded(_images()) - _features_of(digits_checkpoint, _images())).abs().max()
    assert difference <= 1e-5
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["format"] == "torchscript" and sidecar["checked_max_abs_difference"] <= 1e-5


def test_onnx_export_computes_the_backbones_features(
    digits_checkpoint: Path, tmp_path: Path
) -> None:
    onnxruntime = pytest.importorskip(
        "onnxruntime", reason="the onnx extra is not installed (pip install 'contrastkit[onnx]')"
    )
    onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
    out = export_backbone(str(digits_checkpoint), tmp_path / "backbone.onnx", "onnx")
    onnx.checker.check_model(onnx.load(str(out)))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    features = session.run(None, {"images": _images().numpy()})[0]  # a batch of 5: dynamic
    expected = _features_of(digits_checkpoint, _images())
    assert (torch.from_numpy(features) - expected).abs().max() <= 1e-5
    assert json.loads(sidecar_path(out).read_text())["format"] == "onnx"


def test_onnx_without_its_extra_and_unknown_formats_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name)
    )
    with pytest.raises(ExportError, match=r"contrastkit\[onnx\]"):
        export_backbone("random:small-cnn", tmp_path / "x.onnx", "onnx")
    with pytest.raises(ExportError, match="valid: state_dict, torchscript, onnx"):
        export_backbone("random:small-cnn", tmp_path / "x.bin", "tflite")
    assert not list(tmp_path.iterdir())


def test_export_command_names_the_export_and_its_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from contrastkit import cli

    out = tmp_path / "random.ts"
    args = ["export", "--checkpoint", "random:small-cnn", "--out", str(out)]
    assert cli.main([*args, "--format", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and str(sidecar_path(out)) in printed
    assert torch.jit.load(str(out))(torch.zeros(2, 1, 8, 8)).shape == (2, 256)
