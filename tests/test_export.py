"""A pretrained backbone exported alone loads into plain torchvision and computes the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from contrastkit.eval import load_encoder
from contrastkit.export import export_backbone
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
