"""Loss options the seeds use, exact against `reference_options`: SupCon's base_temperature,
the sigmoid loss's max_scale and penalty filtering, and the multi-crop NT-Xent."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from contrastkit.losses import (
    NTXentMulticropLoss,
    SigmoidLoss,
    SupConLoss,
    nt_xent,
    nt_xent_multicrop,
    sigmoid,
    sigmoid_terms,
    supcon,
)

from . import reference_options as ref


def _z(n: int, views: int, d: int, seed: int, requires_grad: bool = False) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, views, d, generator=g, dtype=torch.float64)
    return z.requires_grad_(requires_grad)


def close(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


# --- SupCon base_temperature ------------------------------------------------------------------


@pytest.mark.parametrize(("temperature", "base"), [(0.1, 0.07), (0.5, 0.5), (0.07, 0.2)])
def test_supcon_base_temperature_is_supcontrasts_scaled_loss(temperature: float, base: float):
    z, labels = _z(6, 2, 4, seed=1), torch.tensor([0, 1, 0, 2, 1, 0])
    close(
        supcon(z, labels, temperature, base_temperature=base),
        ref.supcontrast_loss(z, labels, temperature, base),
    )
    module = SupConLoss(temperature, base_temperature=base)
    close(module(z, labels), ref.supcontrast_loss(z, labels, temperature, base))


def test_supcon_default_base_temperature_adds_no_factor() -> None:
    """None means τ: the loss equals SupContrast's with base_temperature = τ, and 1/1.43 of it
    at SupContrast's 0.07 with τ 0.1."""
    z, labels = _z(5, 3, 4, seed=2), torch.tensor([1, 1, 0, 2, 0])
    close(supcon(z, labels, 0.1), ref.supcontrast_loss(z, labels, 0.1, 0.1))
    ratio = supcon(z, labels, 0.1, base_temperature=0.07) / supcon(z, labels, 0.1)
    assert float(ratio) == pytest.approx(0.1 / 0.07)


# --- sigmoid: max_scale and penalty filtering ---------------------------------------------------


def test_max_scale_caps_the_learnt_scale_and_stops_its_gradient() -> None:
    """t = exp(log t) clamped at max_scale: a scale initialised above the cap acts as the cap."""
    z1, z2 = _z(6, 1, 4, seed=3)[:, 0], _z(6, 1, 4, seed=4)[:, 0]
    capped = SigmoidLoss(init_scale=8.0, init_bias=-5.0, max_scale=5.0).double()
    close(capped(z1, z2), sigmoid(z1, z2, 5.0, -5.0))
    capped(z1, z2).backward()
    assert float(capped.log_scale.grad) == 0.0
    below = SigmoidLoss(init_scale=3.0, init_bias=-5.0, max_scale=5.0).double()
    close(below(z1, z2), sigmoid(z1, z2, below.log_scale.exp(), -5.0))
    assert float(capped.forward_with_terms(z1, z2)[1]["scale"]) == 5.0


@pytest.mark.parametrize(("gamma", "threshold"), [(1.0, 0.05), (2.0, 0.3), (0.5, 0.8), (0.0, 0.05)])
@pytest.mark.parametrize(("scale", "bias"), [(5.0, -5.0), (2.0, 0.5)])
def test_penalty_filtering_matches_the_seeds_loop(
    gamma: float, threshold: float, scale: float, bias: float
) -> None:
    """Values and gradients of the filtered pairwise term, blockwise kernel against the loop."""
    z1 = _z(9, 1, 3, seed=5, requires_grad=True)
    z2 = _z(9, 1, 3, seed=6, requires_grad=True)
    s = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    inputs = (z1, z2, s, b)
    got = sigmoid_terms(
        z1[:, 0], z2[:, 0], s, b, gamma, with_kl=False, filter_threshold=threshold, chunk_size=4
    )["pairwise"]
    want = ref.filtered_sigmoid_pairwise(z1[:, 0], z2[:, 0], s, b, gamma, threshold)
    close(got, want)
    for g_got, g_want in zip(
        torch.autograd.grad(got, inputs), torch.autograd.grad(want, inputs), strict=True
    ):
        close(g_got, g_want)


def test_penalty_filtering_drops_pairs_and_waits_for_its_warmup() -> None:
    """The loss changes only once the step passes filtering_warmup_steps, and then equals the
    filtered loop; some negatives really are dropped at this threshold."""
    z1, z2 = _z(8, 1, 4, seed=7)[:, 0], _z(8, 1, 4, seed=8)[:, 0]
    options = {"init_scale": 5.0, "init_bias": -5.0, "gamma": 1.0}
    plain = SigmoidLoss(**options).double()
    filtered = SigmoidLoss(**options, penalty_filtering=True, filtering_warmup_steps=10).double()
    filtered.set_step(10, 100)
    close(filtered(z1, z2), plain(z1, z2))
    filtered.set_step(11, 100)
    scale = filtered.log_scale.detach().exp()  # log 5 was rounded to float32
    expected = ref.filtered_sigmoid_pairwise(z1, z2, scale, -5.0, 1.0, 0.05)
    close(filtered(z1, z2), expected)
    everything = ref.filtered_sigmoid_pairwise(z1, z2, scale, -5.0, 1.0, -1.0)
    assert float(expected) < float(everything)


def test_method_reports_the_step_to_the_loss() -> None:
    from contrastkit.methods import build_method
    from contrastkit.models.backbones import build_backbone

    method = build_method(
        "relic",
        build_backbone("small-cnn", 8, 1),
        loss_options={"penalty_filtering": True},
    )
    method.set_step(6001, 10000)
    assert method.criterion.step == 6001


# --- multi-crop NT-Xent -----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "views"), [(2, 2), (5, 3), (4, 8)])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_multicrop_matches_solo_learns_loss_with_gradients(n: int, views: int, chunk_size) -> None:
    z = _z(n, views, 5, seed=n * views, requires_grad=True)
    got = nt_xent_multicrop(z, temperature=0.1, chunk_size=chunk_size)
    want = ref.nt_xent_multicrop(z, 0.1)
    close(got, want)
    close(torch.autograd.grad(got, z)[0], torch.autograd.grad(want, z)[0])
    close(NTXentMulticropLoss(0.1)(z), want)


def test_multicrop_with_two_views_is_nt_xent() -> None:
    z = _z(7, 2, 4, seed=9)
    close(nt_xent_multicrop(z, temperature=0.2), nt_xent(z[:, 0], z[:, 1], 0.2))


def test_multicrop_keeps_positives_out_of_each_others_denominators() -> None:
    """Identical crops per image, orthogonal images: each pair's term is log(1 + (N−1)·V·e^{−1/τ}),
    with no other positive in the denominator."""
    n, views, tau = 3, 4, 0.5
    z = torch.eye(n, dtype=torch.float64)[:, None, :].repeat(1, views, 1)
    expected = math.log(1 + (n - 1) * views * math.exp(-1 / tau))
    close(nt_xent_multicrop(z, temperature=tau), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("views", [2, 4])
def test_supervised_multicrop_matches_solo_learns_loss_with_gradients(views: int) -> None:
    """--supervised: positives share the label, each pair's denominator holds the other labels."""
    z = _z(6, views, 4, seed=11, requires_grad=True)
    labels = torch.tensor([3, 1, 3, 0, 1, 3])
    got = nt_xent_multicrop(z, labels, temperature=0.1)
    want = ref.nt_xent_multicrop(z, 0.1, labels)
    close(got, want)
    close(torch.autograd.grad(got, z)[0], torch.autograd.grad(want, z)[0])
    close(NTXentMulticropLoss(0.1)(z, labels), want)
    distinct = torch.tensor([5, 4, 3, 2, 1, 0])
    close(nt_xent_multicrop(z, distinct, temperature=0.1), nt_xent_multicrop(z, temperature=0.1))


def test_multicrop_refuses_a_single_view() -> None:
    with pytest.raises(ValueError, match=r"\(batch, views >= 2, dim\)"):
        nt_xent_multicrop(_z(4, 1, 3, seed=1))
