"""The `swav` method: its loss equals a float64 loop reference built from SwAV's code (codes from
the global views, with the queue's rows prepended), the queue starts at its epoch, the
prototypes stay fixed for their frozen steps in training, and resume is bit-exact."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from contrastkit import cli
from contrastkit.losses import SwAVLoss
from contrastkit.methods import METHODS, Embeddings, build_method
from contrastkit.methods.pairing import Batch
from contrastkit.methods.queue import Queue
from contrastkit.methods.swav import SwappedPrediction
from contrastkit.models.backbones import build_backbone
from contrastkit.train.config import ConfigError, build_config, load_preset
from contrastkit.train.data import resolved_augmentation
from contrastkit.train.run import pretrain

from ..losses import reference_prototypes as reference
from ..losses.test_distributed import gloo_worker, join_or_fail
from ..train.small_run import small_config

SMALL_HEAD = {"hidden_dim": 16, "out_dim": 8}


def _swav(**options: object):
    torch.manual_seed(0)
    backbone = build_backbone("small-cnn", 8, in_channels=1)
    pairing = SwappedPrediction(**{"prototypes": 10, "queue_start_epoch": 0, **options})
    return build_method("swav", backbone, projector_options=SMALL_HEAD, pairing=pairing).eval()


def _views(seed: int, n_views: int = 3, batch: int = 6) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, 1, 8, 8, generator=generator)
    return [base + 0.3 * torch.randn(base.shape, generator=generator) for _ in range(n_views)]


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its Euclidean norm, written out in float64."""
    x = x.double()
    return x / x.pow(2).sum(dim=1, keepdim=True).sqrt()


def _reference_loss(method, views: list[torch.Tensor], epsilon: float, iterations: int):
    """SwAV's main_swav.py step in float64: scores z·w of unit projections and prototypes, codes
    by Sinkhorn-Knopp of each global view's scores (the queue's scores prepended, their codes
    dropped) once the queue is full, the swapped-prediction loss over (global view, other view)
    at τ 0.1."""
    with torch.no_grad():
        z = [_unit_rows(method.projector(method.backbone(v))) for v in views]
        prototypes = _unit_rows(method.prototypes.weight)
        scores = [v @ prototypes.T for v in z]
        codes = []
        full_queue = method.queue is not None and int(method.queue.filled) == method.queue.size
        for g in range(2):
            queued = [method.queue.rows(g).double() @ prototypes.T] if full_queue else []
            full = torch.cat([*queued, scores[g]])
            codes.append(reference.sinkhorn(full, epsilon, iterations)[-scores[g].shape[0] :])
    return reference.swav(scores, codes, 0.1)


@pytest.mark.parametrize("queue", [False, True])
def test_the_loss_equals_a_float64_loop_reference(queue: bool) -> None:
    """Two global views and one more view; with `queue`, one earlier step filled the queue
    (6 rows per global view), whose rows then weigh on the codes."""
    method = _swav(queue_size=6) if queue else _swav()
    if queue:
        method.set_step(0, 10, epoch=0)
        method(_views(seed=1))
        method.after_optimizer_step()
        assert int(method.queue.filled) == 6
    views = _views(seed=2)
    loss = method(views).loss
    expected = _reference_loss(method, views, 0.05, 3)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    if queue:  # the queue changes the codes, hence the loss
        method.queue.filled.zero_()
        without = method(views).loss
        assert abs(without.item() - loss.item()) > 1e-3


def test_multi_crop_local_views_are_predicted_from_the_global_codes() -> None:
    """Two 8-px global views and two 6-px local ones (each size through the networks as one
    batch): the local views only receive codes, and the loss equals the reference."""
    method = _swav()
    method.views_in_one_batch = True
    generator = torch.Generator().manual_seed(5)
    local = [torch.randn(6, 1, 6, 6, generator=generator) for _ in range(2)]
    views = [*_views(seed=5, n_views=2), *local]
    expected = _reference_loss(method, views, 0.05, 3)
    torch.testing.assert_close(method(views).loss.double(), expected, rtol=1e-5, atol=1e-6)


def test_the_queue_takes_the_global_views_from_its_start_epoch() -> None:
    """Before `queue_start_epoch` nothing is pushed; from it on, the unit-norm projections of
    the global views, one ring buffer each, and a partly filled queue is not used yet."""
    method = _swav(queue_size=12, queue_start_epoch=3)
    views = _views(seed=3)
    method.set_step(5, 10, epoch=2)
    method(views)
    method.after_optimizer_step()
    assert int(method.queue.filled) == 0
    method.set_step(6, 10, epoch=3)
    loss = method(views).loss
    method.after_optimizer_step()
    assert int(method.queue.filled) == 6
    for g in range(2):
        z = _unit_rows(method.projector(method.backbone(views[g])))
        torch.testing.assert_close(method.queue.rows(g).double(), z, rtol=1e-6, atol=1e-6)
    assert method(views).loss.item() == loss.item()  # half full: codes from the batch alone


def test_sinkhorn_options_reach_the_codes() -> None:
    views = _views(seed=4)
    method = _swav(epsilon=0.2, iterations=5)
    expected = _reference_loss(method, views, 0.2, 5)
    torch.testing.assert_close(method(views).loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert abs(_reference_loss(method, views, 0.05, 3).item() - expected.item()) > 1e-3


def test_the_method_defaults_follow_swav() -> None:
    pairing = METHODS["swav"].pairing
    assert (pairing.prototypes, pairing.epsilon, pairing.iterations) == (3000, 0.05, 3)
    backbone = build_backbone("small-cnn", 8, in_channels=1)
    method = build_method("swav", backbone)
    assert method.prototypes.weight.shape == (3000, 128)
    assert method.criterion.temperature == 0.1 and method.queue is None


def _full_queue_codes(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Global view 0's codes and the loss for `rows` of an 8-row batch of three views, with a
    full 12-row queue (float64; the same draws in every process)."""
    generator = torch.Generator().manual_seed(3)
    pairing = SwappedPrediction(prototypes=5, queue_size=12)
    torch.manual_seed(0)
    prototypes = pairing.prototype_layer(4).double()
    queue = Queue(12, 4, count=2).double()
    keys = torch.randn(2, 12, 4, generator=generator, dtype=torch.float64)
    queue.keys.copy_(F.normalize(keys, dim=-1))
    queue.filled.fill_(12)
    z = [torch.randn(8, 4, generator=generator, dtype=torch.float64)[rows] for _ in range(3)]
    batch = Batch(Embeddings(z[0], z), None, 2, SwAVLoss(), queue, prototypes=prototypes)
    codes = pairing.codes(batch, 0, prototypes(F.normalize(z[0], dim=1)))
    return codes, pairing.losses(batch)[0][0].detach()


def _queue_rank(rank: int, out_dir: str) -> None:
    """Worker: rank `rank`'s 4 rows of `_full_queue_codes`, saved."""
    out = Path(out_dir)
    with gloo_worker(rank, 2, out / "store", out):
        codes, loss = _full_queue_codes(slice(4 * rank, 4 * rank + 4))
        torch.save({"codes": codes, "loss": loss}, out / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_ranks_sharing_the_queue_get_the_codes_of_one_process(tmp_path: Path) -> None:
    """Each rank prepends half the (replicated) queue: every queued row counts once in
    Sinkhorn's sums over ranks, so each rank's codes are its rows of one process's codes."""
    context = mp.start_processes(_queue_rank, args=(str(tmp_path),), nprocs=2, join=False)
    join_or_fail(context, tmp_path, 120.0)
    codes, loss = _full_queue_codes(slice(None))
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rank, result in enumerate(results):
        torch.testing.assert_close(result["codes"], codes[4 * rank : 4 * rank + 4])
    torch.testing.assert_close((results[0]["loss"] + results[1]["loss"]) / 2, loss)


class _RecordPrototypes(L.Callback):
    """The prototypes after each optimiser step, by the number of steps taken."""

    def __init__(self) -> None:
        self.after: dict[int, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.after[trainer.global_step] = module.method.prototypes.weight.detach().clone()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.after[trainer.global_step] = module.method.prototypes.weight.detach().clone()


def _swav_config(out: Path, **values: object):
    return small_config(out, method="swav", prototypes=30, **values)


def test_the_prototypes_stay_fixed_for_their_frozen_steps(tmp_path: Path) -> None:
    """SGD with momentum and weight decay: any gradient or decay would move them."""
    record = _RecordPrototypes()
    pretrain(_swav_config(tmp_path, freeze_prototypes_steps=4), callbacks=[record])
    start = record.after[0]
    assert start.shape == (30, 32)  # `prototypes=30` on the 32-wide projector
    for step in range(1, 5):
        assert torch.equal(record.after[step], start), step
    assert not torch.equal(record.after[5], start)
    assert not torch.equal(record.after[6], record.after[5])


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    """Frozen for 20 steps (epoch 0 has 14), a queue of 200 rows started at epoch 1: the stop
    falls inside the freeze and before the queue, so both must carry over exactly."""

    class StopAfterFirstEpoch(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            trainer.should_stop = True

    options = {
        "epochs": 2,
        "freeze_prototypes_steps": 20,
        "swav_queue_size": 200,
        "swav_queue_start_epoch": 1,
    }
    pretrain(_swav_config(tmp_path / "straight", **options))
    pretrain(_swav_config(tmp_path / "stopped", **options), callbacks=[StopAfterFirstEpoch()])
    first = torch.load(tmp_path / "stopped" / "last.ckpt", weights_only=False)["state_dict"]
    pretrain(_swav_config(tmp_path / "stopped", resume=True, **options))

    def state(run: str) -> dict[str, torch.Tensor]:
        return torch.load(tmp_path / run / "last.ckpt", weights_only=False)["state_dict"]

    straight, resumed = state("straight"), state("stopped")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)
    assert int(first["method.queue.filled"]) == 0 and int(straight["method.queue.filled"]) == 200
    assert not torch.equal(first["method.prototypes.weight"], straight["method.prototypes.weight"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "swav", "prototypes": 0}, "prototypes=0: must be >= 1"),
        ({"method": "swav", "sinkhorn_epsilon": 0.0}, "sinkhorn_epsilon=0.0: must be > 0"),
        ({"method": "swav", "sinkhorn_iterations": 0}, "sinkhorn_iterations=0: must be >= 1"),
        ({"method": "swav", "swav_queue_size": -1}, "swav_queue_size=-1: must be >= 0"),
        ({"method": "swav", "queue_size": 64}, "queue_size=64: swav's queue is set by"),
        ({"method": "simclr", "swav_queue_size": 64}, "swav_queue_size=64: only method swav"),
        (
            {"method": "swav", "swav_queue_size": 63, "devices": 2, "accelerator": "cpu"},
            "swav_queue_size=63: must be a multiple of the 2 devices",
        ),
    ],
)
def test_bad_swav_options_are_one_line_errors(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        small_config(tmp_path, **values)


SOLO_LEARN_VIEW = {  # solo-learn's augmentations/symmetric.yaml, both crops
    "scale": [0.08, 1.0],
    "jitter_p": 0.8,
    "brightness": 0.8,
    "contrast": 0.8,
    "saturation": 0.8,
    "hue": 0.2,
    "grayscale_p": 0.2,
    "blur_p": 0.5,
    "solarize_p": 0.0,
    "flip_p": 0.5,
}


@pytest.mark.parametrize(
    ("name", "train_images", "size"),
    [("cifar10_swav", 50000, 32), ("imagenet100_swav", 126689, 224)],
)
def test_the_presets_follow_solo_learn(name: str, train_images: int, size: int) -> None:
    """Prototypes frozen for solo-learn's 2 epochs, counted in steps of the preset's batch, and
    solo-learn's two symmetric crops."""
    config = build_config([load_preset(name)])
    assert config.freeze_prototypes_steps == 2 * (train_images // config.batch_size)
    views = resolved_augmentation(config)
    assert len(views) == 2
    for view in views:
        assert view["crop_size"] == size
        assert {key: view[key] for key in SOLO_LEARN_VIEW} == SOLO_LEARN_VIEW


def test_the_command_line_refuses_a_bad_swav_option_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["pretrain", "--method", "swav", "--out", str(tmp_path), "sinkhorn_iterations=0"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sinkhorn_iterations=0: must be >= 1" in err
