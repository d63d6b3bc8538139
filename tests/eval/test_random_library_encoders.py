"""`random:timm/<name>` and `random:torchvision/<name>`: an untrained library backbone as the
floor of an evaluation, with its keyword arguments as `backbone.<kwarg>=value`, checked against
the model plain timm and torchvision build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torchvision

from contrastkit.cli import main
from contrastkit.eval import load_encoder
from contrastkit.eval.errors import EvaluationError

VIT = "timm/vit_tiny_patch16_224"
VIT_ON_DIGITS = {"img_size": 8, "patch_size": 4}  # digits: 8×8 pixels, one channel


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_a_random_timm_vit_is_plain_timms_model_with_the_same_seed() -> None:
    """Same width, parameter count and, from the same seed, the same weights as
    timm.create_model (without classifier, one input channel, dynamic image size)."""
    encoder = load_encoder(f"random:{VIT}", seed=3, backbone_options=VIT_ON_DIGITS)
    torch.manual_seed(3)
    plain = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        in_chans=1,
        dynamic_img_size=True,
        **VIT_ON_DIGITS,
    )
    assert encoder.backbone.name == VIT
    assert encoder.backbone.feature_dim == plain.num_features == 192
    assert _parameters(encoder.backbone.body) == _parameters(plain)
    ours, theirs = encoder.backbone.body.state_dict(), plain.state_dict()
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        assert torch.equal(ours[name].cpu(), value), name
    assert encoder.identity == f"random:{VIT}:3|" + json.dumps(VIT_ON_DIGITS, sort_keys=True)


def test_a_random_torchvision_resnet_has_plain_torchvisions_width_and_parameters() -> None:
    """torchvision's resnet18 less its classifier (512·1000 + 1000) and, for one-channel
    digits, two of its first convolution's three input channels (64·2·7·7)."""
    encoder = load_encoder("random:torchvision/resnet18")
    plain = torchvision.models.resnet18(weights=None)
    assert encoder.backbone.feature_dim == plain.fc.in_features == 512
    expected = _parameters(plain) - (512 * 1000 + 1000) - 64 * 2 * 7 * 7
    assert _parameters(encoder.backbone.body) == expected
    images = torch.zeros(2, 1, 8, 8, device=encoder.device)
    with torch.no_grad():
        assert encoder.backbone(images).shape == (2, 512)


def test_evaluate_runs_knn_on_a_random_timm_vit_given_its_keyword_arguments(
    tmp_path: Path,
) -> None:
    out = tmp_path / "knn.json"
    options = ["k=5", "backbone.img_size=8", "backbone.patch_size=4"]
    code = main(["evaluate", "--checkpoint", f"random:{VIT}", "--protocol", "knn",
                 "--out", str(out), *options])  # fmt: skip
    assert code == 0
    record = json.loads(out.read_text())
    assert record["backbone"] == VIT and record["backbone_options"] == VIT_ON_DIGITS
    assert record["checkpoint"] == f"random:{VIT}" and 0.1 < record["top1"] <= 1.0


@pytest.mark.parametrize(
    ("spec", "extra", "message"),
    [
        ("random:timm/vit_tiny_patch16_22", [], "close matches: timm/vit_tiny_patch16_224"),
        ("random:torchvision/resnet19", [], "unknown backbone 'torchvision/resnet19'"),
        ("random:vit", [], "unknown backbone 'vit'; valid: resnet18"),
        ("random:small-cnn", ["backbone.depth=3"], "backbone.depth=3"),
        (f"random:{VIT}", ["backbone.pretrained=true"], "pretrained"),
    ],
)
def test_an_unknown_random_backbone_or_option_is_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], spec: str, extra: list[str], message: str
) -> None:
    assert main(["evaluate", "--checkpoint", spec, "--protocol", "knn", *extra]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("contrastkit: error:") and message in line, line
    assert captured.out == ""


def test_backbone_options_are_refused_for_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"backbone\.img_size=8: .*random:<backbone>"):
        load_encoder(str(tmp_path / "run.ckpt"), backbone_options={"img_size": 8})
