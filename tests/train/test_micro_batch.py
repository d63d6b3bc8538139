"""Gradient caching (`micro_batch_size`): the full-batch loss and gradient from micro-batches.

The references are computed independently of `contrastkit.train.grad_cache`: the full-batch
gradient by one forward and backward of the whole batch, the micro-batch-BN gradient by keeping
every micro-batch's graph at once, the running statistics by embedding each micro-batch once.
"""

from __future__ import annotations

import copy
import csv
import math
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

from contrastkit import cli
from contrastkit.methods import Embeddings, Method, build_method
from contrastkit.models.backbones import Backbone, build_backbone
from contrastkit.train import run
from contrastkit.train.config import ConfigError, PretrainConfig, build_config
from contrastkit.train.errors import NonFiniteLossError
from contrastkit.train.grad_cache import cached_forward
from tests.losses.test_distributed import gloo_worker, join_or_fail

from .small_run import small_config
from .test_resume import _StopAfterFirstEpoch, _weights

BATCH = 16
CASES = [
    ("simclr", "nt_xent"),
    ("simclr", "dcl"),
    ("barlow_twins", None),
    ("vicreg", None),
    ("simsiam", None),
    ("supcon", None),
    ("relic", None),
    ("supervised", None),
    ("byol", None),
    ("moco_v2", None),
    ("moco_v3", None),
    ("nnclr", None),
    ("lejepa", None),
    ("dino", None),
    ("swav", None),
]
NO_BN_HEAD = {"hidden_dim": 32, "out_dim": 16, "batch_norm": False, "last_bn": False}
DINO_HEAD = {"hidden_dim": 32, "out_dim": 16, "bottleneck_dim": 8}  # GELU, never BN
EXACT = {"rtol": 0.0, "atol": 1e-6}
# The micro-batches of 16 samples: near-equal sizes of at most `micro_batch_size`.
SPANS = {4: [(0, 4), (4, 8), (8, 12), (12, 16)], 6: [(0, 5), (5, 10), (10, 16)]}


def tiny_backbone(dropout: float = 0.0) -> Backbone:
    """Two convolutions without batch norm (optionally dropout), pooled to 16 features."""
    body = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(dropout) if dropout else nn.Identity(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return Backbone("tiny", body, 16, 1)


def new_method(name: str, loss: str | None = None, backbone: Backbone | None = None) -> Method:
    """`name` in float64 on `backbone` (default: the BN-free tiny one) with BN-free heads."""
    torch.manual_seed(0)
    method = build_method(
        name,
        backbone or tiny_backbone(),
        loss=loss,
        num_classes=4,
        projector_options={"supervised": None, "dino": DINO_HEAD}.get(name, NO_BN_HEAD),
        predictor_options={"hidden_dim": 8, "batch_norm": False, "last_bn": False},
    ).double()
    method.set_step(0, 10)  # as the trainer does: the step's schedules (LeJEPA's directions)
    return method


def make_views(name: str, batch: int = BATCH) -> tuple[list[Tensor], Tensor]:
    """Two 8×8 views in float64 (plus a 6×6 local view for ReLIC's multi-crop) and labels."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(batch, 1, 8, 8, generator=gen, dtype=torch.float64)
    views = [base + 0.3 * torch.randn(base.shape, generator=gen, dtype=base.dtype) for _ in "ab"]
    if name == "relic":
        views.append(torch.randn(batch, 1, 6, 6, generator=gen, dtype=base.dtype))
    return views, torch.arange(batch) % 4


def grads(method: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


def assert_grads_close(got: dict[str, Tensor], expected: dict[str, Tensor], **tol: float) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], **tol, msg=name)


def max_gap(got: dict[str, Tensor], expected: dict[str, Tensor]) -> float:
    return max((got[n] - expected[n]).abs().max().item() for n in expected)


def full_batch(method: Method, views: list[Tensor], labels: Tensor) -> tuple[float, dict]:
    """Loss and parameter gradients of one forward and backward over the whole batch."""
    reference = copy.deepcopy(method)
    out = reference(views, labels)
    out.loss.backward()
    return out.loss.item(), grads(reference)


def micro_batch_graphs(method: Method, views: list[Tensor], labels: Tensor, size: int) -> dict:
    """Gradients with every micro-batch's graph kept at once: the gradient of training with
    micro-batch batch norm, computed without gradient caching."""
    reference = copy.deepcopy(method)
    parts = [reference.embed([v[start:end] for v in views]) for start, end in SPANS[size]]
    loss, _ = reference.loss_from(Embeddings.cat(parts), labels)
    loss.backward()
    return grads(reference)


# --- exactness without batch norm ---------------------------------------------------------


@pytest.mark.parametrize("size", [4, 6])
@pytest.mark.parametrize(("name", "loss"), CASES)
def test_without_batch_norm_the_gradient_equals_the_full_batch_gradient(
    name: str, loss: str | None, size: int
) -> None:
    """Loss, components and every parameter gradient equal the full batch's (size 6: micro-batches
    of 5, 5 and 6 samples)."""
    method = new_method(name, loss)
    views, labels = make_views(name)
    expected_loss, expected = full_batch(method, views, labels)
    expected_components = dict(copy.deepcopy(method)(views, labels).components)
    step = cached_forward(method, views, labels, size)
    step.backward()
    assert step.output.loss.item() == pytest.approx(expected_loss, rel=1e-12)
    for key, value in expected_components.items():
        torch.testing.assert_close(step.output.components[key], value, **EXACT)
    assert_grads_close(grads(method), expected, **EXACT)
    assert step.output.features.shape == (BATCH, 16) and not step.output.features.requires_grad


def test_in_float32_the_gradient_equals_the_full_batch_gradient_to_1e_6() -> None:
    method = new_method("simclr").float()
    views, labels = make_views("simclr")
    views = [v.float() for v in views]
    _, expected = full_batch(method, views, labels)
    cached_forward(method, views, labels, 4).backward()
    assert max_gap(grads(method), expected) < 1e-6


def test_every_gradient_goes_through_the_given_backward() -> None:
    """A loss scaling backward (fp16's grad scaler) scales all of it, the loss's own learnable
    scale and bias included, so unscaling gives the full-batch gradient."""
    method = new_method("relic")
    views, labels = make_views("relic")
    _, expected = full_batch(method, views, labels)
    cached_forward(method, views, labels, 4).backward(lambda t: (t * 1024.0).backward())
    assert_grads_close({n: g / 1024.0 for n, g in grads(method).items()}, expected, **EXACT)
    assert {"criterion.log_scale", "criterion.bias"} <= set(expected)


def test_each_micro_batch_replays_its_random_state() -> None:
    """With dropout, the re-forward draws the masks of the first pass: the gradient equals
    that of keeping every micro-batch's graph, and the random state ends as after one pass."""
    method = new_method("simclr", backbone=tiny_backbone(dropout=0.5))
    views, labels = make_views("simclr")
    torch.manual_seed(7)
    expected = micro_batch_graphs(method, views, labels, 4)
    after_one_pass = torch.get_rng_state()
    torch.manual_seed(7)
    cached_forward(method, views, labels, 4).backward()
    assert_grads_close(grads(method), expected, **EXACT)
    assert torch.equal(torch.get_rng_state(), after_one_pass)


# --- batch norm ---------------------------------------------------------------------------


def bn_method() -> Method:
    """SimCLR on the small CNN (batch norm in the backbone and projector), float64."""
    torch.manual_seed(0)
    backbone = build_backbone("small-cnn", 8, in_channels=1)
    return build_method(
        "simclr", backbone, projector_options={"hidden_dim": 32, "out_dim": 16}
    ).double()


def bn_state(method: Method) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in method.state_dict().items() if "running" in k or "num_b" in k}


def test_batch_norm_running_statistics_advance_once_per_micro_batch() -> None:
    method = bn_method()
    views, labels = make_views("simclr")
    reference = copy.deepcopy(method)
    with torch.no_grad():
        for start, end in SPANS[6]:
            reference.embed([v[start:end] for v in views])
    cached_forward(method, views, labels, 6).backward()
    got, expected = bn_state(method), bn_state(reference)
    assert expected["backbone.body.block1.1.num_batches_tracked"] == 3 * 2  # micro-batches × views
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-12, msg=key)


def test_with_batch_norm_the_gradient_is_that_of_micro_batch_statistics() -> None:
    """The documented caveat: equal to the gradient with micro-batch BN, not the full batch's."""
    method = bn_method()
    views, labels = make_views("simclr")
    expected = micro_batch_graphs(method, views, labels, 4)
    _, full = full_batch(method, views, labels)
    cached_forward(method, views, labels, 4).backward()
    assert_grads_close(grads(method), expected, **EXACT)
    assert max_gap(grads(method), full) > 1e-3


# --- memory -------------------------------------------------------------------------------


class _Saved:
    """A tensor the autograd graph saved, counted while the graph holds it."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


@contextmanager
def backbone_graph_samples(method: Method) -> Iterator[list[int]]:
    """Track the samples' worth of activations the backbone's graph holds; yields [peak].

    Every tensor the backbone's forward saves for backward (parameters aside) is counted from
    when the graph saves it until the graph frees it, divided by the per-sample size.
    """
    params = {p.untyped_storage().data_ptr() for p in method.parameters()}
    live, peak = [0], [0]

    def pack(tensor: Tensor) -> object:
        if tensor.dim() == 0 or tensor.untyped_storage().data_ptr() in params:
            return tensor
        saved, samples = _Saved(tensor), tensor.numel() / tensor[0].numel()
        live[0] += samples
        peak[0] = max(peak[0], live[0])
        weakref.finalize(saved, lambda: live.__setitem__(0, live[0] - samples))
        return saved

    def unpack(saved: object) -> Tensor:
        return saved.tensor if isinstance(saved, _Saved) else saved

    body = method.backbone.body
    original = body.forward

    def forward(x: Tensor) -> Tensor:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            return original(x)

    body.forward = forward
    try:
        yield peak
    finally:
        del body.forward


def test_the_backbone_graph_only_ever_holds_one_micro_batch() -> None:
    """Peak saved activations: 2 views × M samples per saved tensor with micro-batches,
    2 views × B without."""
    views, labels = make_views("simclr")
    peaks = {}
    for size in (None, 6):
        method = new_method("simclr")
        with backbone_graph_samples(method) as peak:
            if size is None:
                method(views, labels).loss.backward()
            else:
                cached_forward(method, views, labels, size).backward()
        peaks[size] = peak[0]
    saved_per_sample = peaks[None] / (2 * BATCH)
    assert saved_per_sample >= 3  # conv inputs and ReLU outputs are saved
    assert peaks[6] == 2 * 6 * saved_per_sample


# --- DDP ----------------------------------------------------------------------------------

WORLD = 2
DDP_METHODS = ("simclr", "relic", "swav")


def counting_all_reduce(calls, bucket):
    """DDP's default gradient all-reduce, counted (no annotations: DDP checks any it finds)."""
    calls[0] += 1
    return allreduce_hook(None, bucket)


def ddp_rank(rank: int, out_dir: str) -> None:
    """Worker: one cached step on this rank's 8 rows (micro-batches 2, 3, 3) per method, with
    Lightning's manual backward and DDP's no_sync; saves gradients and all-reduce counts."""
    from lightning.pytorch.overrides.distributed import prepare_for_backward

    out = Path(out_dir)
    with gloo_worker(rank, WORLD, out / "store", out):
        results = {}
        for name in DDP_METHODS:
            views, labels = make_views(name)
            rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
            counts = []
            for size in (None, 3):
                method = new_method(name)
                model = DistributedDataParallel(method)
                calls = [0]

                model.register_comm_hook(calls, counting_all_reduce)

                def backward(tensor: Tensor, model: DistributedDataParallel = model) -> None:
                    prepare_for_backward(model, tensor)  # what manual_backward does under DDP
                    tensor.backward()

                local_views = [v[rows] for v in views]
                if size is None:
                    backward(method(local_views, labels[rows]).loss)
                else:
                    step = cached_forward(method, local_views, labels[rows], size)
                    step.backward(backward, model.no_sync)
                    results[name] = grads(method)
                counts.append(calls[0])
            results[name, "all_reduce_calls"] = counts
        torch.save(results, out / f"rank{rank}.pt")


@pytest.mark.slow
def test_under_ddp_the_gradient_equals_the_single_process_full_batch_gradient(
    tmp_path: Path,
) -> None:
    """2 gloo ranks × 8 rows in micro-batches of 2, 3, 3 = one process on all 16 rows; DDP reduces
    the gradients once per step, as many bucket all-reduces as a plain step."""
    context = mp.start_processes(ddp_rank, args=(str(tmp_path),), nprocs=WORLD, join=False)
    join_or_fail(context, tmp_path, 120.0)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for name in DDP_METHODS:
        method = new_method(name)
        _, expected = full_batch(method, *make_views(name))
        for result in results:
            assert_grads_close(result[name], expected, rtol=0.0, atol=1e-10)
            plain, cached = result[name, "all_reduce_calls"]
            assert cached == plain >= 1


# --- training and the command line --------------------------------------------------------


@pytest.mark.slow
def test_pretrain_with_micro_batches_trains_and_logs_a_finite_loss(tmp_path: Path) -> None:
    result = run.pretrain(small_config(tmp_path, micro_batch_size=48, epochs=2))
    with open(result.log_dirs["csv"] / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(row["train/loss_step"]) for row in rows if row.get("train/loss_step")]
    assert len(losses) >= 10 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) < sum(losses[:3])
    assert 0.0 <= result.metrics["val/top1"] <= 1.0
    assert result.checkpoint.is_file()


@pytest.mark.slow
def test_resuming_a_micro_batch_run_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    """ReLIC (EMA target, learnable loss scale and bias) with micro-batches of 48 of 128."""
    # val_fraction 0.1 as before its default became 0: on all 1438 digits this run's loss scale
    # underflowed to 0 (the sigmoid loss's check_positive stopped the run)
    config = {"method": "relic", "epochs": 2, "micro_batch_size": 48, "val_fraction": 0.1}
    run.pretrain(small_config(tmp_path / "straight", **config))
    run.pretrain(small_config(tmp_path / "stopped", **config), callbacks=[_StopAfterFirstEpoch()])
    run.pretrain(small_config(tmp_path / "stopped", resume=True, **config))
    straight = _weights(tmp_path / "straight" / "last.ckpt")
    resumed = _weights(tmp_path / "stopped" / "last.ckpt")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)


def _poison_loss(monkeypatch: pytest.MonkeyPatch, call: int, kind: str) -> None:
    """Make `Method.loss_from` return a NaN loss, or a finite loss whose gradient reaches a
    backbone weight as NaN, at the 0-based `call`."""
    loss_from = Method.loss_from
    count = iter(range(10**6))

    def poisoned(self: Method, embeddings: Embeddings, labels: Tensor | None = None) -> tuple:
        loss, components = loss_from(self, embeddings, labels)
        if next(count) != call:
            return loss, components
        if kind == "loss":
            return loss * math.nan, components
        weight = next(self.backbone.parameters())
        return loss + 0.0 * torch.sqrt(weight.sum() * 0.0), components  # value 0, gradient NaN

    monkeypatch.setattr(Method, "loss_from", poisoned)


@pytest.mark.slow
def test_with_micro_batches_a_nan_loss_step_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_loss(monkeypatch, 2, "loss")
    result = run.pretrain(small_config(tmp_path, micro_batch_size=48, skip_nonfinite=1))
    last = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert (last["skipped_nonfinite"], last["global_step"]) == (1, 10)  # 11 batches, 1 skipped
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


@pytest.mark.slow
def test_with_micro_batches_nan_gradients_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_loss(monkeypatch, 1, "gradients")
    with pytest.raises(NonFiniteLossError, match=r"^non-finite gradients at step 1 \(epoch 0\)"):
        run.pretrain(small_config(tmp_path, micro_batch_size=48))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"micro_batch_size": 1}, "micro_batch_size=1: must be >= 2"),
        ({"micro_batch_size": 2, "batch_size": 7}, "would leave a micro-batch of 1 sample"),
    ],
)
def test_micro_batches_batch_norm_cannot_train_on_are_refused(
    values: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config([values])


@pytest.mark.parametrize(
    "values", [{"micro_batch_size": 2, "batch_size": 8}, {"micro_batch_size": 3, "batch_size": 7}]
)
def test_micro_batch_sizes_that_leave_two_samples_or_more_are_accepted(
    values: dict[str, int],
) -> None:
    assert build_config([values]).micro_batch_size == values["micro_batch_size"]


def test_the_command_line_sets_micro_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[PretrainConfig] = []

    def fake(config: PretrainConfig, callbacks: object = ()) -> None:
        started.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(run, "pretrain", fake)
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--micro-batch-size", "32"])
    assert started[0].micro_batch_size == 32
    assert PretrainConfig().micro_batch_size is None
