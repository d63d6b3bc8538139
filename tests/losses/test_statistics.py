"""Exactness of the non-contrastive losses against naive float64 references and closed forms.

Covers vicreg, barlow_twins, simsiam, supcon, sigmoid (with cosine_gamma), alignment and
uniformity, their `*_terms` helpers and Module wrappers: values and gradients against
`reference_statistics`, gradcheck, and inputs whose loss is known exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.losses import (
    AlignmentLoss,
    BarlowTwinsLoss,
    SigmoidLoss,
    SimSiamLoss,
    SupConLoss,
    UniformityLoss,
    VICRegLoss,
    alignment,
    barlow_twins,
    barlow_twins_terms,
    cosine_gamma,
    nt_xent,
    sigmoid,
    sigmoid_terms,
    simsiam,
    supcon,
    uniformity,
    vicreg,
    vicreg_terms,
)

from . import reference_statistics as ref

RTOL, ATOL = 1e-10, 1e-12
SHAPES = [(2, 1), (2, 4), (5, 3), (16, 8)]
# Labels with repeats, a singleton and arbitrary (negative, non-contiguous) values, per batch size.
LABELS = {
    2: [3, 3],
    5: [0, -1, 0, 7, -1],
    8: [0, 1, 2, 0, 1, 5, 0, 9],
}


def views(n: int, d: int, seed: int, requires_grad: bool = False) -> tuple[Tensor, Tensor]:
    """Two random float64 views with per-column scales in [0.3, 3] and unequal row norms.

    The column scales put some VICReg standard deviations below 1 and some above, so both
    sides of its hinge are exercised; the offsets make centring matter.
    """
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.3, 3.0, d, dtype=torch.float64)
    z = torch.randn(2, n, d, generator=g, dtype=torch.float64) * scales + 0.5
    z1, z2 = z[0].clone(), z[1].clone()
    return z1.requires_grad_(requires_grad), z2.requires_grad_(requires_grad)


def close(actual: Tensor, expected: Tensor | float, rtol: float = RTOL, atol: float = ATOL) -> None:
    """assert_close in float64 at the given tolerances."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def close_terms(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Same keys, and every term equal."""
    assert set(actual) == set(expected)
    for key, value in expected.items():
        close(actual[key], value)


def same_grads(
    loss: Callable[..., Tensor], reference: Callable[..., Tensor], inputs: tuple[Tensor, ...]
) -> None:
    """The gradients of `loss(*inputs)` and `reference(*inputs)` with respect to `inputs` agree."""
    got = torch.autograd.grad(loss(*inputs), inputs)
    expected = torch.autograd.grad(reference(*inputs), inputs)
    for g, e in zip(got, expected, strict=True):
        close(g, e, rtol=1e-9, atol=1e-11)


def hadamard(n: int) -> Tensor:
    """Sylvester's n×n ±1 Hadamard matrix (n a power of two): columns mutually orthogonal."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h


# --- VICReg -------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_vicreg_terms_match_reference(n: int, d: int) -> None:
    z1, z2 = views(n, d, seed=n * 100 + d)
    close_terms(vicreg_terms(z1, z2), ref.vicreg_terms(z1, z2))


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.5, 3.0, 7.0)])
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_vicreg_matches_reference(n: int, d: int, weights: tuple[float, float, float]) -> None:
    z1, z2 = views(n, d, seed=n * 100 + d + 1)
    close(vicreg(z1, z2, *weights), ref.vicreg(z1, z2, *weights))


def test_vicreg_defaults_and_module_match_reference() -> None:
    z1, z2 = views(6, 4, seed=2)
    expected = ref.vicreg(z1, z2, 25.0, 25.0, 1.0)
    close(vicreg(z1, z2), expected)
    close(VICRegLoss()(z1, z2), expected)
    close(VICRegLoss(2.0, 3.0, 4.0)(z1, z2), ref.vicreg(z1, z2, 2.0, 3.0, 4.0))


@pytest.mark.parametrize(("n", "d"), [(2, 3), (7, 5)])
def test_vicreg_gradient_matches_reference(n: int, d: int) -> None:
    z = views(n, d, seed=3, requires_grad=True)
    same_grads(
        lambda a, b: vicreg(a, b, 2.0, 3.0, 4.0), lambda a, b: ref.vicreg(a, b, 2.0, 3.0, 4.0), z
    )


def test_vicreg_gradcheck() -> None:
    z = views(4, 3, seed=4, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: vicreg(a, b, 2.0, 3.0, 4.0), z)


def test_vicreg_identical_uncorrelated_views_with_unit_std_give_zero_terms() -> None:
    """Columns of 2·H (H Hadamard, all-ones column dropped) are centred, orthogonal, std > 1."""
    z = 2 * hadamard(8)[:, 1:]
    terms = vicreg_terms(z, z.clone())
    for key in ("invariance", "variance", "covariance"):
        assert terms[key].item() == 0.0, key
    assert vicreg(z, z.clone()).item() == 0.0


def test_vicreg_collapsed_views_pay_the_full_variance_hinge() -> None:
    """Constant columns have std sqrt(1e-4) = 0.01: variance term 1 − 0.01, nothing else."""
    z = torch.ones(5, 3, dtype=torch.float64)
    terms = vicreg_terms(z, z.clone())
    close(terms["variance"], 1 - math.sqrt(ref.VICREG_STD_EPS))
    assert terms["invariance"].item() == 0.0
    assert terms["covariance"].item() == 0.0


# --- Barlow Twins ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_barlow_twins_terms_match_reference(n: int, d: int) -> None:
    z1, z2 = views(n, d, seed=n * 100 + d + 2)
    close_terms(barlow_twins_terms(z1, z2), ref.barlow_twins_terms(z1, z2))


@pytest.mark.parametrize("lambd", [0.0, 5e-3, 0.1])
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_barlow_twins_matches_reference(n: int, d: int, lambd: float) -> None:
    z1, z2 = views(n, d, seed=n * 100 + d + 3)
    close(barlow_twins(z1, z2, lambd), ref.barlow_twins(z1, z2, lambd))


def test_barlow_twins_defaults_and_module_match_reference() -> None:
    z1, z2 = views(6, 4, seed=5)
    close(barlow_twins(z1, z2), ref.barlow_twins(z1, z2, 5e-3))
    close(BarlowTwinsLoss()(z1, z2), ref.barlow_twins(z1, z2, 5e-3))
    close(BarlowTwinsLoss(0.3)(z1, z2), ref.barlow_twins(z1, z2, 0.3))


@pytest.mark.parametrize(("n", "d"), [(2, 3), (7, 5)])
def test_barlow_twins_gradient_matches_reference(n: int, d: int) -> None:
    z = views(n, d, seed=6, requires_grad=True)
    same_grads(lambda a, b: barlow_twins(a, b, 0.1), lambda a, b: ref.barlow_twins(a, b, 0.1), z)


def test_barlow_twins_gradcheck() -> None:
    z = views(4, 3, seed=7, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: barlow_twins(a, b, 0.1), z)


@pytest.mark.parametrize("affine", [(1.0, 0.0), (3.0, -2.5)])
def test_barlow_twins_identity_correlation_gives_zero(affine: tuple[float, float]) -> None:
    """Hadamard columns standardise to orthonormal columns, so C = I up to the BN epsilon.

    With biased variance s², C_pp = s²/(s² + 1e-5) exactly and C_pq = 0 for p ≠ q.
    """
    scale, shift = affine
    z = scale * hadamard(8)[:, 1:] + shift
    terms = barlow_twins_terms(z, z.clone())
    s2 = scale**2
    close(terms["on_diagonal"], 7 * (1 - s2 / (s2 + ref.BARLOW_EPS)) ** 2)
    close(terms["off_diagonal"], 0.0)
    close(barlow_twins(z, z.clone()), 0.0, atol=1e-9)


# --- SimSiam --------------------------------------------------------------------------------


def four_views(n: int, d: int, seed: int, requires_grad: bool = False) -> tuple[Tensor, ...]:
    """p1, p2, z1, z2: random float64 batches of one shape."""
    p1, p2 = views(n, d, seed, requires_grad)
    z1, z2 = views(n, d, seed + 1, requires_grad)
    return p1, p2, z1, z2


@pytest.mark.parametrize(("n", "d"), [(1, 3), *SHAPES])
def test_simsiam_matches_reference(n: int, d: int) -> None:
    inputs = four_views(n, d, seed=n * 10 + d)
    close(simsiam(*inputs), ref.simsiam(*inputs))
    close(SimSiamLoss()(*inputs), ref.simsiam(*inputs))


def test_simsiam_gradient_matches_reference() -> None:
    p1, p2, z1, z2 = four_views(5, 4, seed=8)
    p = (p1.requires_grad_(), p2.requires_grad_())
    same_grads(lambda a, b: simsiam(a, b, z1, z2), lambda a, b: ref.simsiam(a, b, z1, z2), p)


def test_simsiam_gradcheck_on_predictions() -> None:
    p1, p2, z1, z2 = four_views(3, 4, seed=9)
    p1.requires_grad_(), p2.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: simsiam(a, b, z1, z2), (p1, p2))


def test_simsiam_stops_gradient_through_targets() -> None:
    """z1, z2 are targets only: they get no gradient, whether or not p requires one."""
    p1, p2, z1, z2 = four_views(4, 3, seed=10)
    z1.requires_grad_(), z2.requires_grad_()
    assert not simsiam(p1, p2, z1, z2).requires_grad
    p1.requires_grad_(), p2.requires_grad_()
    simsiam(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad is not None and p2.grad is not None


def test_simsiam_of_predictions_equal_to_targets_is_minus_one() -> None:
    """±1 rows of length 4 have norm 2, so every cosine is exactly 1 in floating point."""
    p = hadamard(4)[[1, 2, 3, 1, 2]]
    assert simsiam(p, p, p.clone(), p.clone()).item() == -1.0
    p32 = p.float().requires_grad_()
    loss = simsiam(p32, p32, p32, p32)
    assert loss.item() == -1.0
    loss.backward()
    close(p32.grad.double(), torch.zeros_like(p), atol=1e-7)


# --- SupCon ---------------------------------------------------------------------------------


def supcon_views(n: int, views_per_sample: int, d: int, seed: int) -> Tensor:
    """Random float64 embeddings of shape (n, views, d) with unequal norms."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, views_per_sample, d, generator=g, dtype=torch.float64)
    return z * (0.2 + 3 * torch.rand(n, views_per_sample, 1, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("n_views", [1, 2, 3])
@pytest.mark.parametrize("n", sorted(LABELS))
def test_supcon_with_labels_matches_reference(n: int, n_views: int, temperature: float) -> None:
    """Includes V = 1 with a singleton label: that anchor has no positive and is left out."""
    z = supcon_views(n, n_views, 4, seed=n * 10 + n_views)
    labels = torch.tensor(LABELS[n])
    close(supcon(z, labels, temperature), ref.supcon(z, labels, temperature))


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("n_views", [2, 3])
@pytest.mark.parametrize("n", [2, 5])
def test_supcon_without_labels_matches_reference(n: int, n_views: int, temperature: float) -> None:
    z = supcon_views(n, n_views, 4, seed=n * 10 + n_views + 1)
    close(supcon(z, None, temperature), ref.supcon(z, None, temperature))


def test_supcon_defaults_and_module_match_reference() -> None:
    z = supcon_views(5, 2, 3, seed=11)
    labels = torch.tensor(LABELS[5])
    close(supcon(z, labels), ref.supcon(z, labels, 0.1))
    close(SupConLoss()(z, labels), ref.supcon(z, labels, 0.1))
    close(SupConLoss(0.3)(z), ref.supcon(z, None, 0.3))


@pytest.mark.parametrize("use_labels", [True, False])
def test_supcon_gradient_matches_reference(use_labels: bool) -> None:
    z = supcon_views(5, 2, 3, seed=12).requires_grad_()
    labels = torch.tensor(LABELS[5]) if use_labels else None
    same_grads(lambda x: supcon(x, labels, 0.2), lambda x: ref.supcon(x, labels, 0.2), (z,))


@pytest.mark.parametrize("use_labels", [True, False])
def test_supcon_gradcheck(use_labels: bool) -> None:
    z = supcon_views(4, 2, 3, seed=13).requires_grad_()
    labels = torch.tensor([1, 0, 1, 2]) if use_labels else None
    assert torch.autograd.gradcheck(lambda x: supcon(x, labels, 0.3), (z,))


@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("n", [2, 3, 9])
def test_supcon_without_labels_and_two_views_is_nt_xent(n: int, temperature: float) -> None:
    z = supcon_views(n, 2, 5, seed=n + 14)
    close(supcon(z, None, temperature), nt_xent(z[:, 0], z[:, 1], temperature))


@pytest.mark.parametrize("n_views", [2, 3])
def test_supcon_with_distinct_labels_equals_no_labels(n_views: int) -> None:
    z = supcon_views(7, n_views, 4, seed=15)
    labels = torch.tensor([40, 3, -2, 17, 0, 8, 5])
    close(supcon(z, labels, 0.2), supcon(z, None, 0.2))


# --- sigmoid --------------------------------------------------------------------------------

SIGMOID_PARAMS = [(10.0, -10.0), (3.0, 0.5)]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize(("scale", "bias"), SIGMOID_PARAMS)
@pytest.mark.parametrize("n", [2, 5, 12])
def test_sigmoid_terms_match_reference(n: int, scale: float, bias: float, gamma: float) -> None:
    z1, z2 = views(n, 4, seed=n + 20)
    expected = ref.sigmoid_terms(z1, z2, scale, bias, gamma)
    close_terms(sigmoid_terms(z1, z2, scale, bias, gamma), expected)
    close_terms(
        sigmoid_terms(z1, z2, scale, bias, gamma, with_kl=False), {"pairwise": expected["pairwise"]}
    )


@pytest.mark.parametrize("kl_weight", [0.0, 0.7])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize(("scale", "bias"), SIGMOID_PARAMS)
def test_sigmoid_matches_reference(
    scale: float, bias: float, gamma: float, kl_weight: float
) -> None:
    z1, z2 = views(6, 3, seed=21)
    expected = ref.sigmoid(z1, z2, scale, bias, gamma, kl_weight)
    close(sigmoid(z1, z2, scale, bias, gamma, kl_weight), expected)
    as_tensors = (torch.tensor(scale, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64))
    close(sigmoid(z1, z2, *as_tensors, gamma, kl_weight), expected)


def test_sigmoid_defaults_match_siglip_initialisation() -> None:
    z1, z2 = views(5, 3, seed=22)
    close(sigmoid(z1, z2), ref.sigmoid(z1, z2, 10.0, -10.0, 0.0, 0.0))


@pytest.mark.parametrize(("gamma", "kl_weight"), [(0.0, 0.0), (2.0, 0.0), (0.0, 0.5), (1.5, 0.5)])
def test_sigmoid_gradient_matches_reference(gamma: float, kl_weight: float) -> None:
    """Gradients to both views and to tensor scale and bias, the modulation (1 − p)^γ included."""
    z1, z2 = views(5, 3, seed=23, requires_grad=True)
    scale = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-1.5, dtype=torch.float64, requires_grad=True)
    same_grads(
        lambda a, b, s, c: sigmoid(a, b, s, c, gamma, kl_weight),
        lambda a, b, s, c: ref.sigmoid(a, b, s, c, gamma, kl_weight),
        (z1, z2, scale, bias),
    )


def test_sigmoid_modulation_carries_gradient() -> None:
    """With γ > 0 the gradient differs from that of the loss with (1 − p)^γ held constant."""
    z1, z2 = views(5, 3, seed=24, requires_grad=True)
    gamma, scale, bias = 2.0, 4.0, -1.5
    (got,) = torch.autograd.grad(sigmoid(z1, z2, scale, bias, gamma), (z1,))
    u, v = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    signed = (2 * torch.eye(5, dtype=torch.float64) - 1) * (scale * u @ v.T + bias)
    frozen = torch.sigmoid(-signed).detach() ** gamma
    (without,) = torch.autograd.grad(-(frozen * F.logsigmoid(signed)).sum() / 5, (z1,))
    (expected,) = torch.autograd.grad(ref.sigmoid(z1, z2, scale, bias, gamma, 0.0), (z1,))
    close(got, expected, rtol=1e-9, atol=1e-11)
    assert (got - without).abs().max() > 1e-3


def test_sigmoid_gradcheck() -> None:
    z1, z2 = views(3, 4, seed=25, requires_grad=True)
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, s, c: sigmoid(a, b, s, c, gamma=1.5, kl_weight=0.5), (z1, z2, scale, bias)
    )


@pytest.mark.parametrize(("scale", "bias"), SIGMOID_PARAMS)
def test_sigmoid_without_extras_is_siglip(scale: float, bias: float) -> None:
    """γ = 0, kl_weight = 0: −(1/N) Σ_ij log σ(y_ij·logits_ij), as in SigLIP's pseudocode."""
    z1, z2 = views(7, 4, seed=26)
    logits = scale * F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T + bias
    labels = 2 * torch.eye(7, dtype=torch.float64) - 1
    close(sigmoid(z1, z2, scale, bias), -F.logsigmoid(labels * logits).sum() / 7)


def test_sigmoid_kl_vanishes_for_symmetric_logits() -> None:
    z, _ = views(6, 4, seed=27)
    close(sigmoid_terms(z, z.clone(), 5.0, -2.0)["kl"], 0.0)
    close(sigmoid(z, z.clone(), 5.0, -2.0, kl_weight=3.0), sigmoid(z, z.clone(), 5.0, -2.0))


def test_sigmoid_module_initialisation() -> None:
    module = SigmoidLoss()
    close(module.log_scale.double(), math.log(10.0), atol=1e-7)
    close(module.bias.double(), -10.0)
    assert module.log_scale.requires_grad and module.bias.requires_grad
    frozen = SigmoidLoss(learnable=False)
    assert not frozen.log_scale.requires_grad and not frozen.bias.requires_grad


@pytest.mark.parametrize(("gamma", "kl_weight"), [(0.0, 0.0), (2.0, 0.5)])
def test_sigmoid_module_learns_log_scale_and_bias(gamma: float, kl_weight: float) -> None:
    """Loss and gradients of log-scale and bias equal the reference at scale = e^log_scale."""
    z1, z2 = views(5, 3, seed=28)
    module = SigmoidLoss(init_scale=4.0, init_bias=-1.5, gamma=gamma, kl_weight=kl_weight).double()
    loss = module(z1, z2)
    log_scale = module.log_scale.detach().clone().requires_grad_()
    bias = module.bias.detach().clone().requires_grad_()
    expected = ref.sigmoid(z1, z2, log_scale.exp(), bias, gamma, kl_weight)
    close(loss, expected)
    loss.backward()
    expected.backward()
    assert module.log_scale.grad is not None and module.bias.grad is not None
    close(module.log_scale.grad, log_scale.grad, rtol=1e-9, atol=1e-11)
    close(module.bias.grad, bias.grad, rtol=1e-9, atol=1e-11)
    assert module.log_scale.grad.abs() > 0 and module.bias.grad.abs() > 0


def test_cosine_gamma_schedule() -> None:
    assert cosine_gamma(0, 2.0, 100) == 2.0
    assert cosine_gamma(100, 2.0, 100) == 0.0
    assert cosine_gamma(250, 2.0, 100) == 0.0
    assert cosine_gamma(50, 2.0, 100) == pytest.approx(1.0, rel=1e-12)
    assert cosine_gamma(25, 2.0, 100) == pytest.approx(1 + math.sqrt(0.5), rel=1e-12)
    values = [cosine_gamma(step, 2.0, 100) for step in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert cosine_gamma(7, 2.0, 0) == 2.0
    assert cosine_gamma(7, 2.0, -5) == 2.0


# --- alignment and uniformity ---------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
@pytest.mark.parametrize(("n", "d"), [(1, 3), *SHAPES[1:]])
def test_alignment_matches_reference(n: int, d: int, alpha: float) -> None:
    z1, z2 = views(n, d, seed=n * 7 + d)
    close(alignment(z1, z2, alpha), ref.alignment(z1, z2, alpha))
    close(AlignmentLoss(alpha)(z1, z2), ref.alignment(z1, z2, alpha))


@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
@pytest.mark.parametrize(("n", "d"), SHAPES[1:])
def test_uniformity_matches_reference(n: int, d: int, t: float) -> None:
    z, _ = views(n, d, seed=n * 7 + d + 1)
    close(uniformity(z, t), ref.uniformity(z, t))
    close(UniformityLoss(t)(z), ref.uniformity(z, t))


def test_geometry_defaults_match_reference() -> None:
    z1, z2 = views(5, 3, seed=29)
    close(alignment(z1, z2), ref.alignment(z1, z2, 2.0))
    close(AlignmentLoss()(z1, z2), ref.alignment(z1, z2, 2.0))
    close(uniformity(z1), ref.uniformity(z1, 2.0))
    close(UniformityLoss()(z1), ref.uniformity(z1, 2.0))


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_gradient_matches_reference(alpha: float) -> None:
    z = views(5, 3, seed=30, requires_grad=True)
    same_grads(lambda a, b: alignment(a, b, alpha), lambda a, b: ref.alignment(a, b, alpha), z)


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_uniformity_gradient_matches_reference(t: float) -> None:
    z = views(5, 3, seed=31, requires_grad=True)[:1]
    same_grads(lambda x: uniformity(x, t), lambda x: ref.uniformity(x, t), z)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_alignment_gradcheck(alpha: float) -> None:
    z = views(3, 4, seed=32, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: alignment(a, b, alpha), z)


def test_uniformity_gradcheck() -> None:
    z = views(4, 3, seed=33, requires_grad=True)[:1]
    assert torch.autograd.gradcheck(lambda x: uniformity(x, 2.0), z)


@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_uniformity_of_two_antipodal_points(t: float) -> None:
    """‖u − v‖² = 4, so the mean kernel is e^{−4t} and its log −4t."""
    z = torch.tensor([[3.0, 0.0, 0.0], [-0.5, 0.0, 0.0]], dtype=torch.float64)
    close(uniformity(z, t), -4 * t)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_closed_forms(alpha: float) -> None:
    """Identical views are 0 apart; antipodal unit vectors are 2 apart, giving 2^α."""
    z, _ = views(4, 3, seed=34)
    close(alignment(z, 5 * z, alpha), 0.0, atol=1e-7)
    close(alignment(z, -0.5 * z, alpha), 2**alpha)
