"""Export a pretrained backbone's weights alone, under torchvision's parameter names.

The ResNets and EfficientNet are torchvision modules inside `Backbone.body`, so the exported
state dict loads into `torchvision.models.resnet18()` once its stem (and, below 64 px, its
max-pool) is shaped as ours and its classifier is replaced (see the README).
"""

from __future__ import annotations

from pathlib import Path

from .fileio import atomic_torch_save


def export_backbone(spec: str, out: str | Path) -> Path:
    """Write the backbone state dict of checkpoint `spec` to `out` (atomically); return `out`."""
    from .eval import load_encoder

    encoder = load_encoder(spec)
    state = {k: v.detach().cpu() for k, v in encoder.backbone.body.state_dict().items()}
    atomic_torch_save(state, out)
    return Path(out)
