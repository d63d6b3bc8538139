"""views_in_one_batch: the views of one size meet batch norm together; the default is per view."""

from __future__ import annotations

import copy

import torch
from torch import nn

from contrastkit.methods import build_method
from contrastkit.models.backbones import build_backbone


def _method(views_in_one_batch: bool):
    torch.manual_seed(0)
    backbone = build_backbone("small-cnn", 8, in_channels=1)
    method = build_method(
        "barlow_twins", backbone, projector_options={"hidden_dim": 16, "out_dim": 8}, n_global=2
    )
    method.views_in_one_batch = views_in_one_batch
    return method


def _views() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    sizes = (8, 8, 6, 6, 6)  # two global views, three local ones
    # Different means per view, so statistics over one view differ from those over several.
    return [torch.randn(5, 1, s, s, generator=generator) + i for i, s in enumerate(sizes)]


def _first_bn(module: nn.Module) -> nn.modules.batchnorm._BatchNorm:
    return next(m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_views_of_one_size_share_batch_statistics() -> None:
    """Outputs and BN running statistics equal one manual forward per size group."""
    method, views = _method(True), _views()
    reference = copy.deepcopy(method)
    embeddings = method.embed(views)
    big = reference.projector(reference.backbone(torch.cat(views[:2])))
    small = reference.projector(reference.backbone(torch.cat(views[2:])))
    expected = [*big.chunk(2), *small.chunk(3)]
    for got, want in zip(embeddings.z, expected, strict=True):
        torch.testing.assert_close(got, want)
    # Running statistics were updated once per size group, over all of its views' samples.
    for got, want in (
        (method.backbone, reference.backbone),
        (method.projector, reference.projector),
    ):
        torch.testing.assert_close(_first_bn(got).running_mean, _first_bn(want).running_mean)
        torch.testing.assert_close(_first_bn(got).running_var, _first_bn(want).running_var)


def test_default_passes_each_view_alone() -> None:
    """Without the option each view is its own batch: different from the joined forward."""
    method, views = _method(False), _views()
    reference = copy.deepcopy(method)
    embeddings = method.embed(views)
    for got, view in zip(embeddings.z, views, strict=True):
        torch.testing.assert_close(got, reference.projector(reference.backbone(view)))
    joined = _method(True).embed(views)
    assert not torch.allclose(joined.z[0], embeddings.z[0], atol=1e-3)
