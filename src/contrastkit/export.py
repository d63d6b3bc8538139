"""Export a pretrained backbone's weights alone, under its library's parameter names.

The file holds `state_dict` and how to rebuild the model outside contrastkit: `library`
(timm, torchvision, or contrastkit for the built-in names), `name`, `kwargs`, and for torchvision
the layers replaced: `classifier` (by nn.Identity) and `first_conv` (for another channel count).
A timm backbone is `timm.create_model(name, **kwargs)`. The built-in ResNets and EfficientNet
are torchvision modules inside `Backbone.body`, so their state dict loads into
`torchvision.models.resnet18()` once its stem (and, below 64 px, its max-pool) is shaped as ours
and its classifier is replaced (see the README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .fileio import atomic_torch_save
from .models.backbones import Backbone


def backbone_export(backbone: Backbone) -> dict[str, Any]:
    """The backbone's body weights (on the CPU) and its library, name and kwargs."""
    state = {k: v.detach().cpu() for k, v in backbone.body.state_dict().items()}
    return {"state_dict": state, **backbone.source}


def export_backbone(spec: str, out: str | Path) -> Path:
    """Write the backbone export of checkpoint `spec` to `out` (atomically); return `out`."""
    from .eval import load_encoder

    encoder = load_encoder(spec)
    atomic_torch_save(backbone_export(encoder.backbone), out)
    return Path(out)
