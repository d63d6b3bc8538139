"""One DDP optimiser step of whole methods on 2 gloo CPU ranks against one process on all rows.

Two ranks are spawned once for the module. For each method, each rank loads the same initial
weights, takes rows r·8:(r+1)·8 of fixed views, wraps the method in DistributedDataParallel and
takes one SGD step, under three batch-norm modes:

- `sync_bn`: `contrastkit.models.sync_batchnorm.convert_sync_batchnorm`, which is what
  `sync_batchnorm=true` applies on CPU ranks (torch's own SyncBatchNorm runs on CUDA only).
  Batch statistics then span both ranks, so the step should equal one process's step on all
  16 samples with plain BatchNorm.
- `rank_bn`: plain BatchNorm, each rank normalising over its own 8 samples (the trainer's default).
  It must differ from the single process: the comparison can fail, and syncing matters.
- `frozen_bn`: batch norm in eval mode, so normalisation does not depend on the batch. What is
  left, DDP's gradient averaging over the losses' gathered negatives and batch statistics, must
  reproduce the single-process step on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from contrastkit.methods import Method, build_method
from contrastkit.models.backbones import build_backbone
from contrastkit.models.sync_batchnorm import convert_sync_batchnorm
from tests.losses.test_distributed import gloo_worker, join_or_fail

WORLD = 2
ROWS_PER_RANK = 8
METHODS = ("simclr", "barlow_twins", "vicreg", "supcon", "dino")  # dino: EMA target, centre
MODES = ("sync_bn", "rank_bn", "frozen_bn")
LR = 0.05  # larger rates move Barlow Twins' weights so far that float32 rounding nears 1e-5
TOL = {"rtol": 0.0, "atol": 1e-5}
SPAWN_TIMEOUT_S = 120.0
# Class 0 and class 1 have members on both ranks (SupCon positives across ranks).
LABELS = torch.tensor([0, 0, 1, 2, 2, 3, 4, 5, 0, 1, 6, 6, 7, 8, 9, 9])


def new_method(name: str) -> Method:
    """The method on an 8×8 grey-scale small CNN with a small projector."""
    return build_method(
        name,
        build_backbone("small-cnn", 8, 1),
        projector_options={"hidden_dim": 64, "out_dim": 32},
    )


def make_inputs() -> dict[str, object]:
    """Two float32 views (each its own tensor), labels, and every method's initial weights."""
    gen = torch.Generator().manual_seed(0)
    n = WORLD * ROWS_PER_RANK
    base = torch.randn(n, 1, 8, 8, generator=gen)
    views = [base + 0.5 * torch.randn(n, 1, 8, 8, generator=gen) for _ in range(2)]
    labels = LABELS.clone()
    initial = {}
    for name in METHODS:
        torch.manual_seed(0)
        method = new_method(name)
        calibrate_batch_norm(method, views, labels)
        initial[name] = method.state_dict()
    return {"views": views, "labels": labels, "initial": initial}


@torch.no_grad()
def calibrate_batch_norm(method: Method, views: list[Tensor], labels: Tensor) -> None:
    """Set BN running statistics to the views' batch statistics, as after some training.

    With the initial (0, 1) statistics, eval-mode BN leaves the projections nearly constant
    (std ~1e-3) and Barlow Twins' standardisation blows their gradients up to where float32
    rounding alone exceeds the tolerance.
    """
    norms = [m for m in method.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None  # cumulative average over the forwards below
    method.train()(views, labels)
    for norm in norms:
        norm.momentum = 0.1


def sgd_step(model: nn.Module, views: list[Tensor], labels: Tensor) -> None:
    """One plain SGD step (no momentum, no weight decay) on the method's loss, then the
    method's own updates (EMA target, DINO's centre from the teacher rows of every rank)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.0)
    optimizer.zero_grad()
    model(views, labels).loss.backward()
    optimizer.step()
    getattr(model, "module", model).after_optimizer_step()


def rank_step(name: str, mode: str, inputs: dict, rank: int) -> dict[str, object]:
    """This rank's state after one DDP step of `name` in `mode`, or torch's CPU refusal."""
    method = new_method(name)
    method.load_state_dict(inputs["initial"][name])
    rows = slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK)
    views = [v[rows].clone() for v in inputs["views"]]
    if mode == "sync_bn":
        method = convert_sync_batchnorm(method)
    if mode == "frozen_bn":
        method.eval()
    model = DistributedDataParallel(method)
    sgd_step(model, views, inputs["labels"][rows].clone())
    return {"state": {k: v.detach().clone() for k, v in method.state_dict().items()}}


def run_rank(rank: int, out_dir: str) -> None:
    """Worker: join the gloo group through a file store, run every case and save the states."""
    out = Path(out_dir)
    with gloo_worker(rank, WORLD, out / "store", out):
        inputs = torch.load(out / "inputs.pt", weights_only=True)
        results = {(n, m): rank_step(n, m, inputs, rank) for n in METHODS for m in MODES}
        torch.save(results, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def inputs() -> dict[str, object]:
    """The views, labels and initial weights shared by the ranks and the single process."""
    return make_inputs()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory, inputs: dict) -> list[dict]:
    """Spawn the ranks once; each rank's results by (method, mode), in rank order."""
    out_dir = tmp_path_factory.mktemp("ddp")
    torch.save(inputs, out_dir / "inputs.pt")
    context = mp.start_processes(run_rank, args=(str(out_dir),), nprocs=WORLD, join=False)
    join_or_fail(context, out_dir, SPAWN_TIMEOUT_S)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single_process(inputs: dict) -> dict[tuple[str, bool], dict[str, Tensor]]:
    """State after one step in this process on all 16 samples, by (method, BN in eval mode)."""
    assert not (dist.is_available() and dist.is_initialized())
    states = {}
    for name in METHODS:
        for frozen in (False, True):
            method = new_method(name)
            method.load_state_dict(inputs["initial"][name])
            method.train(not frozen)
            sgd_step(method, [v.clone() for v in inputs["views"]], inputs["labels"].clone())
            states[name, frozen] = {k: v.detach().clone() for k, v in method.state_dict().items()}
    return states


def test_sync_conversion_keeps_a_frozen_target_frozen() -> None:
    """The EMA target's batch norms stay without gradients once converted: DDP would otherwise
    wait for their gradients and leave the buckets they share unreduced."""
    method = new_method("dino")
    norms = {
        f"{name}.{key}"
        for name, module in method.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for key, _ in module.named_parameters()
    }
    frozen = {n for n, p in method.named_parameters() if not p.requires_grad}
    assert norms & frozen  # the target's batch norms
    converted = convert_sync_batchnorm(method)
    assert {n for n, p in converted.named_parameters() if not p.requires_grad} == frozen


def assert_states_close(got: dict[str, Tensor], expected: dict[str, Tensor], rank: int) -> None:
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(
            got[key], expected[key], **TOL, msg=lambda m, k=key: f"rank {rank}, {k}: {m}"
        )


def max_parameter_gap(
    got: dict[str, Tensor], expected: dict[str, Tensor], names: list[str]
) -> float:
    """The largest absolute difference over the entries `names` of two state dicts."""
    return max((got[k] - expected[k]).abs().max().item() for k in names)


@pytest.mark.parametrize("name", METHODS)
def test_sync_batchnorm_ddp_step_equals_the_single_process_step(
    name: str, rank_results: list[dict], single_process: dict
) -> None:
    """DDP + our SyncBatchNorm + gathered losses on 2×8 samples = one process on 16 (params and
    BN running statistics), as `sync_batchnorm=true` trains on CPU ranks."""
    results = [r[name, "sync_bn"] for r in rank_results]
    for rank, result in enumerate(results):
        assert_states_close(result["state"], single_process[name, False], rank)


@pytest.mark.parametrize("name", METHODS)
def test_with_batch_independent_norm_the_ddp_step_equals_the_single_process_step(
    name: str, inputs: dict, rank_results: list[dict], single_process: dict
) -> None:
    """DDP's gradient average over the losses' gathered rows reproduces the 16-sample step."""
    expected = single_process[name, True]
    for rank, results in enumerate(rank_results):
        assert_states_close(results[name, "frozen_bn"]["state"], expected, rank)
    # The step is not vacuous: parameters moved by far more than the tolerance.
    initial = inputs["initial"][name]
    params = [k for k, _ in new_method(name).named_parameters()]
    assert max_parameter_gap(expected, initial, params) > 1000 * TOL["atol"]


@pytest.mark.parametrize("name", METHODS)
def test_without_sync_batchnorm_the_ddp_step_differs(
    name: str, rank_results: list[dict], single_process: dict
) -> None:
    """Per-rank BatchNorm statistics change the step well beyond the tolerance: sync matters."""
    expected = single_process[name, False]
    params = [k for k, _ in new_method(name).named_parameters()]
    for results in rank_results:
        state = results[name, "rank_bn"]["state"]
        assert max_parameter_gap(state, expected, params) > 100 * TOL["atol"]
    # DDP still kept the ranks' parameters identical; only their BN statistics differ.
    states = [results[name, "rank_bn"]["state"] for results in rank_results]
    for key in params:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
    means = [key for key in states[0] if key.endswith("running_mean")]
    assert all(not torch.equal(states[0][key], states[1][key]) for key in means)
