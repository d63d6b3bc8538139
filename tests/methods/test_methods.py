"""Every method trains: a few optimiser steps on tiny data lower its loss, with finite gradients."""

from __future__ import annotations

import pytest
import torch

from contrastkit.methods import CONTRASTIVE_LOSSES, METHODS, build_method, method_for_loss
from contrastkit.methods.pairing import online_target_pairs, view_pairs
from contrastkit.models import EMASchedule
from contrastkit.models.backbones import build_backbone

SMALL_HEAD = {"hidden_dim": 64, "out_dim": 32}


def _method(name: str, loss: str | None = None, **options):
    torch.manual_seed(0)
    backbone = build_backbone("small-cnn", 8, in_channels=1)
    projector = None if name == "supervised" else SMALL_HEAD
    return build_method(
        name, backbone, loss=loss, num_classes=4, projector_options=projector, **options
    )


def _views(n_views: int = 2, batch: int = 32) -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(batch, 1, 8, 8, generator=generator)
    views = [base + 0.3 * torch.randn(base.shape, generator=generator) for _ in range(n_views)]
    return views, torch.arange(batch) % 4


CASES = [("simclr", loss) for loss in CONTRASTIVE_LOSSES] + [
    (name, None) for name in METHODS if name != "simclr"
]


@pytest.mark.parametrize(("name", "loss"), CASES)
def test_a_few_steps_lower_the_loss_with_finite_gradients(name: str, loss: str | None) -> None:
    """Queue methods compare from step 2, once the queue (one batch) is full: before, the
    loss grows with the number of negatives."""
    method = _method(name, loss, queue_size=32)
    views, labels = _views(n_views=3 if name == "relic" else 2)
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(12):
        method.set_step(step, 12)
        out = method(views, labels)
        optimizer.zero_grad()
        out.loss.backward()
        grads = [p.grad for p in method.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        optimizer.step()
        method.after_optimizer_step()
        losses.append(out.loss.item())
    first = 2 if method.queue is not None else 0
    assert losses[-1] < losses[first], losses
    assert out.features.shape == (32, method.backbone.feature_dim)


def test_views_meet_as_declared() -> None:
    assert view_pairs(2, 2) == [(0, 1)]
    assert view_pairs(4, 2) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    assert online_target_pairs(3, 2) == [(0, 1), (1, 0), (2, 0), (2, 1)]


def test_relic_target_follows_the_cosine_momentum_schedule() -> None:
    method = _method("relic", ema=EMASchedule(base=0.9))
    online = dict(method.target.online.named_parameters())
    target = dict(method.target.target.named_parameters())
    name = next(iter(online))
    with torch.no_grad():
        online[name].add_(1.0)
    before = target[name].clone()
    method.set_step(0, 10)  # momentum = base at step 0
    method.after_optimizer_step()
    torch.testing.assert_close(target[name], 0.9 * before + 0.1 * online[name])
    assert not any(p.requires_grad for p in method.target.parameters())


def test_relic_gamma_decays_with_the_cosine_schedule() -> None:
    method = _method("relic", loss_options={"gamma": 2.0, "gamma_decay_steps": 100})
    method.set_step(0, 1000)
    assert method.criterion.gamma == pytest.approx(2.0)
    method.set_step(50, 1000)
    assert method.criterion.gamma == pytest.approx(1.0)
    method.set_step(100, 1000)
    assert method.criterion.gamma == 0.0


def test_simsiam_predictor_can_keep_a_fixed_learning_rate() -> None:
    groups = _method("simsiam").param_groups(fixed_predictor_lr=True)
    predictor = [g for g in groups if g.get("fixed_lr")]
    assert len(predictor) == 1
    assert all(name.startswith("predictor.") for name, _ in predictor[0]["named"])
    others = {name for g in groups if not g.get("fixed_lr") for name, _ in g["named"]}
    assert not any(name.startswith(("predictor.", "target.")) for name in others)


def test_every_loss_maps_to_a_method() -> None:
    assert {method_for_loss(loss) for loss in CONTRASTIVE_LOSSES} == {"simclr"}
    assert method_for_loss("sigmoid") == "relic"
    assert method_for_loss("barlow_twins") == "barlow_twins"
    with pytest.raises(ValueError, match="'hinge'"):
        method_for_loss("hinge")


def test_a_loss_the_method_cannot_use_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot train with loss 'vicreg'"):
        _method("simclr", "vicreg")


def test_labels_are_required_where_the_method_needs_them() -> None:
    views, _ = _views()
    with pytest.raises(ValueError, match="needs labels"):
        _method("supcon")(views, None)


def test_pair_reduction_sums_or_averages_the_view_pairs() -> None:
    views, _ = _views(n_views=3)
    losses = {}
    for reduction in ("mean", "sum"):
        method = _method("byol", pair_reduction=reduction).eval()
        losses[reduction] = method(views).loss.item()
    # three views, two global: 4 online × target pairs
    assert losses["sum"] == pytest.approx(4 * losses["mean"], rel=1e-6)
    assert _method("byol").pair_reduction == "sum" and _method("simclr").pair_reduction == "mean"


def test_the_step_reports_z_std_and_the_loss_terms() -> None:
    views, _ = _views()
    method = _method("lejepa")
    method.set_step(0, 10)
    out = method(views)
    expected = torch.nn.functional.normalize(method.projector(method.backbone(views[0])), dim=1)
    assert out.components["z_std"].item() == pytest.approx(expected.std(0).mean().item(), rel=1e-5)
    assert {"invariance", "sigreg"} <= set(out.components)


def test_nnclr_logs_how_often_the_neighbour_has_the_query_label() -> None:
    """After one step the support set holds view 0's projections with their labels: the
    share equals the one counted by hand from the nearest support rows."""
    method = _method("nnclr", queue_size=64).eval()
    views, labels = _views()
    method(views, labels)
    method.after_optimizer_step()
    assert method.queue.row_labels().tolist() == labels.tolist()
    shifted = [v.roll(1, dims=0) for v in views]
    out = method(shifted, labels)
    z = torch.nn.functional.normalize(method.projector(method.backbone(shifted[0])), dim=1)
    support = torch.nn.functional.normalize(method.queue.rows(0), dim=1)
    nearest = (z @ support.T).argmax(dim=1)
    expected = (labels[nearest] == labels).float().mean()
    assert out.components["nn_label_share"].item() == pytest.approx(expected.item())
    # rolled by one, each query's neighbour is the previous sample, of another label (i − 1 mod 4)
    assert expected.item() == 0.0 and (nearest == torch.arange(32).roll(1)).all()
    assert method(views, labels).components["nn_label_share"].item() == 1.0  # itself
