"""NormalizedLinear (prototypes, DINO's last layer) and DINOHead: unit-norm rows, freezing counted
in optimiser steps, and the DINO head's layout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from contrastkit.models.heads import DINOHead, NormalizedLinear


def test_normalized_linear_is_the_cosine_with_each_row_whatever_the_row_scale() -> None:
    torch.manual_seed(0)
    layer = NormalizedLinear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.mul_(torch.tensor([[0.1], [7.0], [3.0]], dtype=torch.float64))
    out = layer(x)
    for i in range(5):
        for k in range(3):
            row = layer.weight[k].detach()
            expected = torch.dot(x[i], row) / math.sqrt(float(torch.dot(row, row)))
            torch.testing.assert_close(out[i, k], expected, rtol=1e-12, atol=1e-12)


def train_steps(layer: NormalizedLinear, steps: int) -> list[bool]:
    """SGD steps (momentum, weight decay) on a model whose last layer is `layer`; returns, per
    step, whether the layer's weight changed. A first layer always trains."""
    torch.manual_seed(1)
    first = nn.Linear(4, 4)
    optimiser = torch.optim.SGD(
        [*first.parameters(), *layer.parameters()], lr=0.5, momentum=0.9, weight_decay=0.1
    )
    changed = []
    for step in range(steps):
        before, first_before = layer.weight.detach().clone(), first.weight.detach().clone()
        optimiser.zero_grad()
        layer(first(torch.randn(8, 4))).square().sum().backward()
        layer.drop_grads_if_frozen(step)
        optimiser.step()
        assert not torch.equal(first.weight, first_before)
        changed.append(not torch.equal(layer.weight, before))
    return changed


def test_a_frozen_layer_gets_no_update_for_its_first_steps_then_trains() -> None:
    assert train_steps(NormalizedLinear(4, 3, freeze_steps=2), 4) == [False, False, True, True]
    assert train_steps(NormalizedLinear(4, 3, freeze_steps=0), 2) == [True, True]
    layer = NormalizedLinear(4, 3, freeze_steps=3)
    assert [layer.is_frozen(s) for s in range(5)] == [True, True, True, False, False]


def test_dino_head_layout_and_output_are_cosines_with_the_prototypes() -> None:
    torch.manual_seed(2)
    head = DINOHead(12, out_dim=20, hidden_dim=16, bottleneck_dim=6, num_layers=3)
    kinds = [(type(m).__name__, getattr(m, "in_features", None)) for m in head.mlp]
    assert kinds == [("Linear", 12), ("GELU", None), ("Linear", 16), ("GELU", None), ("Linear", 16)]
    assert head.mlp[-1].out_features == 6 and head.last_layer.weight.shape == (20, 6)
    assert all(float(m.weight.std()) < 0.05 for m in head.mlp if isinstance(m, nn.Linear))
    x = torch.randn(3, 12)
    out = head(x)
    bottleneck = head.mlp(x)
    expected = torch.nn.functional.cosine_similarity(
        bottleneck[:, None, :], head.last_layer.weight[None, :, :], dim=-1
    )
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert DINOHead(12, out_dim=5, num_layers=1, bottleneck_dim=4).mlp[0].in_features == 12


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: NormalizedLinear(0, 3), "in_dim"),
        (lambda: NormalizedLinear(3, 3, freeze_steps=-1), "freeze_steps"),
        (lambda: DINOHead(8, num_layers=0), "num_layers"),
        (lambda: DINOHead(8, bottleneck_dim=0), "bottleneck_dim"),
    ],
)
def test_bad_sizes_are_one_line_errors(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
