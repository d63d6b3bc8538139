"""Backbones by name from timm (`timm/<name>`) or torchvision (`torchvision/<name>`), with the
model's own keyword arguments, randomly initialised: weights are never downloaded.

The classifier is removed and the feature width read from the model. timm models are built with
`num_classes=0` and `in_chans`; ViTs (any model accepting it) with `dynamic_img_size=True`, so
that multi-crop views of other sizes pass, and they return their pooled (CLS) features. torchvision
classification models lose their last Linear layer (their classifier) and, for images with other
than 3 channels, get a first convolution of that many input channels.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

LIBRARIES = ("timm", "torchvision")
INSTALL_TIMM = "pip install 'contrastkit[timm]' (or pip install timm)"


class BackboneNameError(ValueError):
    """A library backbone name or keyword argument that cannot be built; one line."""


@dataclass
class LibraryModel:
    """A library model without its classifier, and how to rebuild it in the plain library.

    `kwargs` are every keyword argument the library's constructor received (for timm,
    `timm.create_model(name, **kwargs)` rebuilds it exactly); `classifier` is the qualified name
    of the torchvision layer replaced by nn.Identity (None for timm) and `first_conv` that of the
    convolution replaced for another channel count (None when kept).
    """

    library: str
    name: str
    kwargs: dict[str, Any]
    body: nn.Module
    feature_dim: int
    classifier: str | None = None
    first_conv: str | None = None

    @property
    def source(self) -> dict[str, Any]:
        """What an export records to rebuild the model in the plain library: library, name,
        kwargs, and the torchvision layers replaced (classifier, first_conv; None if none)."""
        return {
            "library": self.library,
            "name": self.name,
            "kwargs": dict(self.kwargs),
            "classifier": self.classifier,
            "first_conv": self.first_conv,
        }


def split_name(spec: str) -> tuple[str, str] | None:
    """(library, model name) for `timm/<name>` or `torchvision/<name>`; None for other names."""
    library, sep, name = spec.partition("/")
    if not sep or library not in LIBRARIES:
        return None
    return library, name


def check_library_backbone(spec: str, options: Mapping[str, Any], in_channels: int = 3) -> None:
    """Raise BackboneNameError unless `spec` names a model the library has and `options` are
    keyword arguments it accepts. Builds the model on the meta device (no memory, no weights),
    or on the CPU for the few models whose construction reads tensor values."""
    try:
        with torch.device("meta"):
            build_library_model(spec, in_channels, options)
    except BackboneNameError as error:
        if "meta" not in str(error):
            raise
        build_library_model(spec, in_channels, options)


def build_library_model(spec: str, in_channels: int, options: Mapping[str, Any]) -> LibraryModel:
    """The model `spec` (`timm/<name>` or `torchvision/<name>`) with keyword arguments
    `options`, for images of `in_channels` channels, without its classifier."""
    parts = split_name(spec)
    if parts is None:
        raise BackboneNameError(
            f"backbone {spec!r} names no library; valid: timm/<name>, torchvision/<name>"
        )
    library, name = parts
    if library == "timm":
        return _timm_model(name, in_channels, dict(options))
    return _torchvision_model(name, in_channels, dict(options))


def check_runs_on(
    model: nn.Module, spec: str, in_channels: int, size: int | tuple[int, int]
) -> None:
    """Raise BackboneNameError unless `model` runs on images of `size` pixels (side, or (height,
    width)) and `in_channels` channels. A library model checks its input size only when it runs
    (a ViT's patch grid), so without this a size mismatch stops training at its first step with
    the library's traceback. One forward of a single zero image in eval mode: no batch
    statistics move, no random draw."""
    height, width = (size, size) if isinstance(size, int) else size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, height, width))
    except (AssertionError, RuntimeError, ValueError, TypeError) as error:
        raise BackboneNameError(
            f"{spec} does not run on {height}x{width} images of {in_channels} "
            f"channel(s): {_first_line(error).rstrip('.')}; valid: its size options (e.g. "
            "backbone.img_size=..., backbone.patch_size=...), view sizes it can take, or "
            "another backbone"
        ) from None
    finally:
        model.train(was_training)


def _unknown(spec: str, name: str, names: list[str]) -> BackboneNameError:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    library = spec.partition("/")[0]
    hint = (
        ", ".join(f"{library}/{c}" for c in close) if close else f"none close ({len(names)} models)"
    )
    return BackboneNameError(f"unknown backbone {spec!r}; close matches: {hint}")


def _timm_model(name: str, in_channels: int, options: dict[str, Any]) -> LibraryModel:
    try:
        import timm
    except ImportError:
        raise BackboneNameError(f"backbone timm/{name} needs timm: {INSTALL_TIMM}") from None
    if not timm.is_model(name):
        raise _unknown(f"timm/{name}", name, timm.list_models())
    _refuse(options, "pretrained", "num_classes", "in_chans")
    kwargs = {"num_classes": 0, "in_chans": in_channels, **options}
    attempts = (
        [kwargs]
        if "dynamic_img_size" in options
        else [
            {**kwargs, "dynamic_img_size": True},
            kwargs,
        ]
    )
    for index, attempt in enumerate(attempts):
        try:
            model = timm.create_model(name, pretrained=False, **attempt)
        except TypeError as error:
            if index == 0 and len(attempts) == 2 and "dynamic_img_size" in str(error):
                continue  # not a ViT: built without it
            raise BackboneNameError(f"timm/{name}: {_first_line(error)}") from None
        except (ValueError, AssertionError, RuntimeError) as error:
            raise BackboneNameError(f"timm/{name} with {options}: {_first_line(error)}") from None
        width = getattr(model, "head_hidden_size", None) or model.num_features
        return LibraryModel("timm", name, attempt, model, int(width))
    raise AssertionError("unreachable")


def _torchvision_model(name: str, in_channels: int, options: dict[str, Any]) -> LibraryModel:
    from torchvision import models

    names = models.list_models(module=models)  # classification models only
    if name not in names:
        raise _unknown(f"torchvision/{name}", name, names)
    _refuse(options, "weights", "num_classes")
    try:
        model = models.get_model(name, weights=None, **options)
    except (TypeError, ValueError, AssertionError, RuntimeError) as error:
        raise BackboneNameError(f"torchvision/{name}: {_first_line(error)}") from None
    classifier, width = _drop_classifier(model, name)
    first_conv = None if in_channels == 3 else _replace_first_conv(model, in_channels, name)
    return LibraryModel(
        "torchvision", name, options, model, width, classifier=classifier, first_conv=first_conv
    )


def _refuse(options: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if key in options:
            raise BackboneNameError(
                f"backbone.{key}={options[key]!r}: contrastkit sets {key} itself (no downloaded "
                "weights, no classifier, the data's channels); use --init-from FILE for weights"
            )


def _drop_classifier(model: nn.Module, name: str) -> tuple[str, int]:
    """Replace the model's last Linear layer (its classifier) by nn.Identity; its name, width."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BackboneNameError(f"torchvision/{name} has no Linear classifier to remove")
    qualified, layer = linears[-1]
    _set_submodule(model, qualified, nn.Identity())
    return qualified, layer.in_features


def _replace_first_conv(model: nn.Module, in_channels: int, name: str) -> str:
    """Give the first convolution `in_channels` inputs, keeping its other settings."""
    qualified, conv = next(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None)
    )
    if conv is None or conv.groups != 1:
        raise BackboneNameError(
            f"torchvision/{name}: cannot adapt its stem to {in_channels} channels"
        )
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    _set_submodule(model, qualified, new)
    return qualified


def _set_submodule(model: nn.Module, qualified: str, module: nn.Module) -> None:
    parent, _, child = qualified.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
