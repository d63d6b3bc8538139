"""Export a pretrained backbone for use outside contrastkit, with what a user needs beside it.

Formats:
- `state_dict`: a dict of `state_dict` (the weights under their library's parameter names) and
  how to rebuild the model outside contrastkit: `library` (timm, torchvision, or contrastkit for
  the built-in names), `name`, `kwargs`, and for torchvision the layers replaced: `classifier`
  (by nn.Identity) and `first_conv` (for another channel count). A timm backbone is
  `timm.create_model(name, **kwargs)`; the built-in ResNets and EfficientNet load into
  `torchvision.models.resnet18()` once its stem (and, below 64 px, its max-pool) is shaped as
  ours and its classifier is replaced; `small-cnn` loads into `contrastkit.models.build_backbone`
  (see the README).
- `torchscript`: the traced backbone, loadable with `torch.jit.load` and no contrastkit.
- `onnx`: the backbone as an ONNX graph with a dynamic batch axis (needs the `onnx` extra).

Each export gets a JSON sidecar, `<file>.json`: backbone name and options, input size and
channels, the per-channel normalisation the backbone was trained with, the feature dimension.
TorchScript and ONNX exports are loaded back and checked against the backbone before the
command reports success.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ContrastkitError
from .fileio import atomic_torch_save, atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:  # torch loads lazily, so that the CLI reads FORMATS at once
    import torch
    from torch import nn

    from .models.backbones import Backbone

FORMATS = ("state_dict", "torchscript", "onnx")
TOLERANCE = 1e-5
"""Largest absolute feature difference a TorchScript or ONNX export may show."""


class ExportError(ContrastkitError, ValueError):
    """An export that cannot be written or does not compute the backbone's features."""


def backbone_export(backbone: Backbone) -> dict[str, Any]:
    """The backbone's body weights (on the CPU) and its library, name and kwargs."""
    state = {k: v.detach().cpu() for k, v in backbone.body.state_dict().items()}
    return {"state_dict": state, **backbone.source}


def sidecar_path(out: str | Path) -> Path:
    """Where the JSON description of export `out` goes: `<out>.json`."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def export_backbone(spec: str, out: str | Path, format: str = "state_dict") -> Path:
    """Write checkpoint `spec`'s backbone to `out` in `format`, and its sidecar, atomically.

    Returns `out`. Raises ExportError for an unknown format, a missing optional package, or an
    export whose features differ from the backbone's by more than `TOLERANCE`.
    """
    import torch

    from .eval import load_encoder

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    if format == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        raise ExportError("format onnx needs onnx and onnxruntime: pip install 'contrastkit[onnx]'")
    encoder = load_encoder(spec)
    backbone = copy.deepcopy(encoder.backbone).cpu().eval()
    example = torch.randn(2, encoder.channels, encoder.image_size, encoder.image_size)
    out = Path(out)
    if format == "state_dict":
        atomic_torch_save(backbone_export(backbone), out)
        difference = None
    elif format == "torchscript":
        difference = _write_torchscript(backbone.body, example, out)
    else:
        difference = _write_onnx(backbone.body, example, out)
    atomic_write_json(sidecar_path(out), _description(encoder, backbone, out, format, difference))
    return out


def _description(
    encoder: Any, backbone: nn.Module, out: Path, format: str, difference: float | None
) -> dict[str, Any]:
    mean, std = _normalization(encoder)
    return {
        "format": format,
        "file": out.name,
        "backbone": backbone.name,
        # contrastkit.models.build_backbone(backbone, **backbone_options).body holds the weights
        "backbone_options": {"image_size": encoder.image_size, "in_channels": encoder.channels},
        "feature_dim": backbone.feature_dim,
        "input": {
            "shape": ["batch", encoder.channels, encoder.image_size, encoder.image_size],
            "dtype": "float32",
            "preprocess": "pixels / 255, then (x - mean) / std per channel",
        },
        "normalization": {"mean": list(mean), "std": list(std)},
        "checked_max_abs_difference": difference,
        "source": {
            "checkpoint": encoder.spec,
            "method": encoder.method,
            "dataset": encoder.dataset,
        },
        "contrastkit_version": __version__,
    }


def _normalization(encoder: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's input normalisation: recorded in the checkpoint or measured on the data,
    else the dataset preset's."""
    return encoder.recipe().mean_std()


def _write_torchscript(body: nn.Module, example: torch.Tensor, out: Path) -> float:
    import torch

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # torch deprecates TorchScript for torch.export; it still loads anywhere torch does.
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(body, example), buffer)
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()))
    difference = _check(body, lambda x: loaded(x), example.shape, "torchscript")
    atomic_write_bytes(out, buffer.getvalue())
    return difference


def _write_onnx(body: nn.Module, example: torch.Tensor, out: Path) -> float:
    import onnxruntime
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter: seconds, where torch.export's took 10-25 s on
        # small-cnn and needs onnxscript besides.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            body,
            (example,),
            buffer,
            input_names=["images"],
            output_names=["features"],
            dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> torch.Tensor:  # onnxruntime takes and gives numpy
        return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])

    difference = _check(body, run, example.shape, "onnx")
    atomic_write_bytes(out, buffer.getvalue())
    return difference


def _check(body: nn.Module, exported: Any, shape: torch.Size, format: str) -> float:
    """The largest feature difference between `body` and its export on a fresh batch of 3
    (another size than the traced one); ExportError above `TOLERANCE`."""
    import torch

    images = torch.randn(3, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (body(images) - exported(images)).abs().max().item()
    if not difference <= TOLERANCE:
        raise ExportError(
            f"{format} export differs from the backbone by {difference:.3g} (> {TOLERANCE})"
        )
    return difference
