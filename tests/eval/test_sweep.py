"""The linear sweep: K heads in one batched product equal K separately trained linear heads."""

from __future__ import annotations

import pytest
import torch

from contrastkit.eval import fit_linear, train_heads
from contrastkit.eval.linear import linear_settings


@pytest.mark.parametrize(
    "schedule",
    [
        {"schedule": "step", "milestones": (2, 3), "gamma": 0.2},
        {"schedule": "cosine", "warmup_epochs": 1.5, "cosine_cycles": 0.3},
    ],
)
def test_the_sweep_equals_separately_trained_heads(schedule: dict) -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(50, 6, generator=generator)
    labels = torch.randint(0, 5, (50,), generator=generator)
    lrs, decays = [0.05, 0.5, 0.05, 0.5], [0.0, 0.0, 1e-2, 1e-2]
    settings = linear_settings(epochs=4, batch_size=16, momentum=0.9, **schedule)
    heads = train_heads(
        features, labels, 5, torch.tensor(lrs), torch.tensor(decays), settings, seed=3
    )
    for k, (lr, decay) in enumerate(zip(lrs, decays, strict=True)):
        alone, _ = fit_linear(
            features, labels, 5, seed=3, **{**settings, "lr": lr, "weight_decay": decay}
        )
        torch.testing.assert_close(heads.weight[k], alone.weight.T, rtol=0, atol=1e-5)
        torch.testing.assert_close(heads.bias[k], alone.bias, rtol=0, atol=1e-5)
    assert not torch.allclose(heads.weight[0], heads.weight[1])  # the grid values act
    assert not torch.allclose(heads.weight[1], heads.weight[3])
