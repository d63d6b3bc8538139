"""The dino method: its loss, centre, teacher temperature and monitors against float64 loop
references; the EMA teacher sees the global views only; its options and their refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.methods import build_method
from contrastkit.methods.centering import TeacherCentering
from contrastkit.methods.pairing import CenteredTarget
from contrastkit.models.backbones import build_backbone
from contrastkit.train.config import ConfigError, build_config
from contrastkit.train.factory import method_from_config

HEAD = {"hidden_dim": 32, "out_dim": 16, "bottleneck_dim": 8}
CENTERING = {"momentum": 0.8, "temp_start": 0.02, "temp_end": 0.06, "warmup_steps": 5}


def _dino(**state: object):
    torch.manual_seed(0)
    backbone = build_backbone("small-cnn", 8, in_channels=1)
    pairing = CenteredTarget(**{**CENTERING, **state})
    return build_method("dino", backbone, projector_options=HEAD, pairing=pairing, n_global=2)


def _views(batch: int = 6) -> list[torch.Tensor]:
    """Two global 8-px views and two local 6-px views."""
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(batch, 1, 8, 8, generator=generator)
    views = [base + 0.3 * torch.randn(base.shape, generator=generator) for _ in range(2)]
    return views + [views[i][..., 1:7, 1:7].clone() for i in (0, 1)]


def _reference_loss(student, teacher, center, student_temp, teacher_temp) -> float:
    """Mean over pairs (t, s ≠ t) of the batch mean of −Σ_k p_t log q_s, sample by sample."""
    pairs = []
    for t, teacher_view in enumerate(teacher):
        for s, student_view in enumerate(student):
            if s == t:
                continue
            terms = []
            for row_t, row_s in zip(teacher_view, student_view, strict=True):
                p = torch.softmax((row_t - center) / teacher_temp, 0)
                log_q = torch.log_softmax(row_s / student_temp, 0)
                terms.append(-(p * log_q).sum().item())
            pairs.append(sum(terms) / len(terms))
    return sum(pairs) / len(pairs)


def test_the_loss_centre_and_monitors_equal_float64_loop_references() -> None:
    method = _dino()
    views = _views()
    with torch.no_grad():
        method.state.center.copy_(torch.randn(1, 16) * 0.3)
    center = method.state.center.double().squeeze(0).clone()
    method.set_step(2, 10)  # the warm-up's third of five values
    assert method.state.temperature == pytest.approx(np.linspace(0.02, 0.06, 5)[2])

    embeddings = method.embed(views)
    loss, components = method.loss_from(embeddings)

    # The teacher is the EMA copy, run on the two global views only.
    assert len(embeddings.targets) == 2
    with torch.no_grad():
        teacher = [method.target(v).double() for v in views[:2]]
        student = [method.projector(method.backbone(v)).double() for v in views]
    for got, expected in zip(embeddings.targets, teacher, strict=True):
        torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-7)
    expected = _reference_loss(student, teacher, center, 0.1, 0.04)
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    rows = torch.cat(teacher)
    p = torch.stack([torch.softmax((row - center) / 0.04, 0) for row in rows])
    entropy = sum(-(row * row.log()).sum().item() for row in p) / len(p)
    mean = p.mean(0)
    kl = sum(m.item() * math.log(m.item() / (1 / 16)) for m in mean)
    assert components["teacher_entropy"].item() == pytest.approx(entropy, rel=1e-5)
    assert components["teacher_kl_uniform"].item() == pytest.approx(kl, rel=1e-4, abs=1e-6)
    assert components["center_norm"].item() == pytest.approx(center.norm().item(), rel=1e-6)

    method.after_optimizer_step()  # centre ← 0.8·centre + 0.2·(mean teacher row)
    expected_center = 0.8 * center + 0.2 * rows.mean(0)
    torch.testing.assert_close(method.state.center.double().squeeze(0), expected_center)


def test_the_teacher_temperature_warms_up_by_epoch_as_dino_then_stays() -> None:
    """DINO's teacher_temp_schedule: np.linspace(start, end, warm-up epochs), then the end, one
    value per epoch (here 10 steps of a 4-epoch, 40-step run)."""
    state = TeacherCentering(4, temp_start=0.04, temp_end=0.07, warmup_epochs=3, epochs=4)
    schedule = np.concatenate([np.linspace(0.04, 0.07, 3), [0.07]])
    for step in range(40):
        state.set_step(step, 40)
        assert state.temperature == pytest.approx(schedule[step // 10]), step


def test_the_teacher_temperature_warms_up_by_step() -> None:
    state = TeacherCentering(4, temp_start=0.04, temp_end=0.07, warmup_steps=7, warmup_epochs=3)
    expected = np.linspace(0.04, 0.07, 7)
    for step in range(12):
        state.set_step(step, 40)
        want = expected[step] if step < 7 else 0.07
        assert state.temperature == pytest.approx(want), step


def test_config_keys_reach_the_method(tmp_path) -> None:
    config = build_config(
        [
            {
                "method": "dino",
                "projector_hidden_dim": 32,
                "projector_out_dim": 12,
                "projector_bottleneck_dim": 6,
                "projector_layers": 2,
                "freeze_last_layer_steps": 7,
                "center_momentum": 0.5,
                "teacher_temp_start": 0.01,
                "loss.teacher_temp": 0.05,
                "teacher_temp_warmup_epochs": 1,
                "epochs": 4,
                "out": str(tmp_path),
            }
        ]
    )
    method = method_from_config(config, 8, 1, 10)
    head = method.projector
    assert head.last_layer.weight.shape == (12, 6) and head.last_layer.freeze_steps == 7
    assert [m.out_features for m in head.mlp if isinstance(m, torch.nn.Linear)] == [32, 6]
    assert method.state.center.shape == (1, 12) and method.state.momentum == 0.5
    method.set_step(0, 40)
    assert method.state.temperature == pytest.approx(0.01)
    method.set_step(10, 40)  # one epoch of four: the warm-up is over
    assert method.state.temperature == pytest.approx(0.05)


def test_the_ema_teacher_starts_at_0996_unless_told() -> None:
    def momentum(**values: object) -> float:
        config = build_config([{"method": "dino", "projector_out_dim": 8, **values}])
        method = method_from_config(config, 8, 1, 10)
        online = next(method.target.online.parameters())
        target = next(method.target.target.parameters())
        with torch.no_grad():
            online.add_(1.0)
        before, now = target.clone(), online.clone()
        method.set_step(0, 100)
        method.after_optimizer_step()
        return 1 - ((target - before) / (now - before)).mean().item()  # the share kept

    assert momentum() == pytest.approx(0.996, abs=1e-6)
    assert momentum(ema_base=0.9) == pytest.approx(0.9, abs=1e-6)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "simclr", "teacher_temp_warmup_epochs": 5}, "teacher_temp_warmup_epochs=5"),
        ({"method": "byol", "center_momentum": 0.5}, "only a method with a teacher centre"),
        ({"method": "simclr", "projector_bottleneck_dim": 8}, "simclr head has no such"),
        ({"method": "simclr", "freeze_last_layer_steps": 3}, "freeze_last_layer_steps=3"),
        ({"method": "dino", "projector_hidden_bn": True}, "projector_hidden_bn=True: the dino"),
        ({"method": "dino", "center_momentum": 1.5}, r"center_momentum=1.5: must be in \[0, 1\]"),
        ({"method": "dino", "teacher_temp_start": 0}, "teacher_temp_start=0.0: must be > 0"),
        ({"method": "dino", "freeze_last_layer_steps": -1}, "freeze_last_layer_steps=-1"),
    ],
)
def test_bad_dino_options_are_one_line_config_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build_config([values])
    assert "\n" not in str(error.value)
