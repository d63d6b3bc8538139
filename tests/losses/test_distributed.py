"""Every loss under a 2-rank gloo group against one process on the concatenated batch.

Two ranks are spawned once for the whole module; each computes every loss on its own rows and
saves values and gradients. The parent checks the library's gather convention: the mean of the
rank losses is the single-process loss, each rank's row gradients divided by the world size
(DDP's averaging) are the single-process gradients for those rows, shared parameters' gradients
averaged over ranks are the single-process ones, and `gather=False` gives the loss of the rank's
rows alone.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

import contrastkit.losses as L

WORLD = 2
ROWS_PER_RANK = 8
DIM = 16
VIEWS = 2
SPAWN_TIMEOUT_S = 90.0
COLLECTIVE_TIMEOUT = timedelta(seconds=30)
TOL = {"rtol": 1e-10, "atol": 1e-10}

# Per-rank labels: rank 0 holds a class of three and a pair, rank 1 a single pair; class 0
# spans both ranks, so ranks hold unequal numbers of positives, and with one view unequal
# numbers of anchors that have any positive at all.
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 0, 5, 5, 6, 7, 8, 9, 10])

Batch = dict[str, Tensor]


@dataclass(frozen=True)
class Case:
    """A loss call over named inputs: `rows` are split across ranks, `params` are shared."""

    fn: Callable[[Batch, bool], Tensor]
    rows: tuple[str, ...] = ("z1", "z2")
    params: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()  # split across ranks but not differentiated


CASES: dict[str, Case] = {
    "info_nce": Case(lambda b, g: L.info_nce(b["z1"], b["z2"], gather=g)),
    "info_nce_symmetric": Case(lambda b, g: L.info_nce(b["z1"], b["z2"], symmetric=True, gather=g)),
    "nt_xent": Case(lambda b, g: L.nt_xent(b["z1"], b["z2"], gather=g)),
    "dcl": Case(lambda b, g: L.dcl(b["z1"], b["z2"], gather=g)),
    "dcl_symmetric": Case(lambda b, g: L.dcl_symmetric(b["z1"], b["z2"], gather=g)),
    "dclw": Case(lambda b, g: L.dclw(b["z1"], b["z2"], gather=g)),
    "dhel": Case(lambda b, g: L.dhel(b["z1"], b["z2"], gather=g)),
    "dhel_both_views": Case(lambda b, g: L.dhel(b["z1"], b["z2"], both_views=True, gather=g)),
    "kcl": Case(lambda b, g: L.kcl(b["z1"], b["z2"], gather=g)),
    "vicreg": Case(lambda b, g: L.vicreg(b["z1"], b["z2"], gather=g)),
    "barlow_twins": Case(lambda b, g: L.barlow_twins(b["z1"], b["z2"], gather=g)),
    # z1 and z2 are differentiated too: their gradient must be zero (stop-gradient) everywhere.
    "simsiam": Case(
        lambda b, g: L.simsiam(b["p1"], b["p2"], b["z1"], b["z2"], gather=g),
        rows=("p1", "p2", "z1", "z2"),
    ),
    "supcon_labels": Case(
        lambda b, g: L.supcon(b["zv"], b["labels"], gather=g), rows=("zv",), fixed=("labels",)
    ),
    "supcon_labels_one_view": Case(
        lambda b, g: L.supcon(b["zv"][:, :1], b["labels"], gather=g),
        rows=("zv",),
        fixed=("labels",),
    ),
    "supcon_unlabelled": Case(lambda b, g: L.supcon(b["zv"], None, gather=g), rows=("zv",)),
    "sigmoid": Case(
        lambda b, g: L.sigmoid(
            b["z1"], b["z2"], b["scale"], b["bias"], gamma=1.5, kl_weight=0.7, gather=g
        ),
        params=("scale", "bias"),
    ),
    # Chunked forms: blocks of 3 rows that straddle the ranks' boundaries in the gathered batch.
    "nt_xent_chunked": Case(lambda b, g: L.nt_xent(b["z1"], b["z2"], gather=g, chunk_size=3)),
    "dclw_chunked": Case(lambda b, g: L.dclw(b["z1"], b["z2"], gather=g, chunk_size=3)),
    "supcon_labels_chunked": Case(
        lambda b, g: L.supcon(b["zv"], b["labels"], gather=g, chunk_size=3),
        rows=("zv",),
        fixed=("labels",),
    ),
    "nt_xent_multicrop": Case(lambda b, g: L.nt_xent_multicrop(b["zc"], gather=g), rows=("zc",)),
    "nt_xent_multicrop_chunked": Case(
        lambda b, g: L.nt_xent_multicrop(b["zc"], gather=g, chunk_size=3), rows=("zc",)
    ),
    "nt_xent_multicrop_labels": Case(
        lambda b, g: L.nt_xent_multicrop(b["zc"], b["labels"], gather=g),
        rows=("zc",),
        fixed=("labels",),
    ),
    "sigmoid_filtered": Case(
        lambda b, g: L.sigmoid(
            b["z1"], b["z2"], b["scale"], b["bias"], gamma=1.0, gather=g, filter_threshold=0.3
        ),
        params=("scale", "bias"),
    ),
    "alignment": Case(lambda b, g: L.alignment(b["z1"], b["z2"], gather=g)),
    "uniformity": Case(lambda b, g: L.uniformity(b["z1"], gather=g), rows=("z1",)),
}


def full_batch() -> Batch:
    """The shared float64 inputs for all ranks together, from a fixed seed."""
    gen = torch.Generator().manual_seed(0)
    n = WORLD * ROWS_PER_RANK

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return {
        "z1": randn(n, DIM),
        "z2": randn(n, DIM),
        "p1": randn(n, DIM),
        "p2": randn(n, DIM),
        "zv": randn(n, VIEWS, DIM),
        "zc": randn(n, 4, DIM),  # multi-crop: four crops per image
        "labels": LABELS.clone(),
        "scale": torch.tensor(5.0, dtype=torch.float64),
        "bias": torch.tensor(-3.0, dtype=torch.float64),
    }


def rank_rows(rank: int) -> slice:
    """Rows of the full batch that belong to `rank`."""
    return slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK)


def case_inputs(case: Case, batch: Batch, rows: slice) -> tuple[Batch, list[str]]:
    """Fresh leaf copies of a case's inputs restricted to `rows`, and the names to differentiate."""
    inputs = {name: batch[name][rows].clone() for name in case.rows + case.fixed}
    inputs |= {name: batch[name].clone() for name in case.params}
    wrt = [*case.rows, *case.params]
    for name in wrt:
        inputs[name].requires_grad_(True)
    return inputs, wrt


def loss_and_grads(case: Case, batch: Batch, rows: slice, gather: bool) -> dict[str, object]:
    """The case's loss on `rows` of the batch and its gradient w.r.t. every differentiated input."""
    inputs, wrt = case_inputs(case, batch, rows)
    loss = case.fn(inputs, gather)
    grads = torch.autograd.grad(loss, [inputs[n] for n in wrt], materialize_grads=True)
    return {"loss": loss.detach(), "grads": dict(zip(wrt, grads, strict=True))}


def rank_result(name: str, rank: int) -> dict[str, object]:
    """One case on this rank: gathered loss and gradients, plus the gather=False loss.

    An exception ends the worker (the other rank would otherwise wait in a collective), naming
    the case so the parent's failure message says which loss broke.
    """
    case, batch, rows = CASES[name], full_batch(), rank_rows(rank)
    try:
        result = loss_and_grads(case, batch, rows, gather=True)
        inputs, _ = case_inputs(case, batch, rows)
        result["local_loss"] = case.fn(inputs, False).detach()
    except Exception as exc:
        raise RuntimeError(f"case {name!r} failed on rank {rank}") from exc
    return result


@contextmanager
def gloo_worker(rank: int, world: int, store: Path | str, out_dir: Path | str) -> Iterator[None]:
    """A spawned worker's body runs inside: one thread, denormals flushed as in the parent
    (tests/conftest.py) for equal arithmetic, the gloo group joined through a file store and
    left afterwards. An exception's traceback is saved as rank{rank}.err, since the first rank
    to exit is often only the collateral one."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        yield
    except Exception:
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def run_rank(rank: int, store: str, out_dir: str) -> None:
    """Worker: join the gloo group through a file store and save every case's result."""
    with gloo_worker(rank, WORLD, store, out_dir):
        results = {name: rank_result(name, rank) for name in CASES}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def worker_tracebacks(out_dir: Path) -> str:
    """The tracebacks the workers wrote before exiting, in rank order."""
    return "\n".join(p.read_text() for p in sorted(out_dir.glob("rank*.err")))


def join_or_fail(context: mp.ProcessContext, out_dir: Path, timeout_s: float) -> None:
    """Wait for all workers; fail with their tracebacks if one fails, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=max(deadline - time.monotonic(), 0.1), grace_period=2):
            if time.monotonic() >= deadline:
                pytest.fail(f"gloo workers did not finish within {timeout_s:.0f} s")
    except mp.ProcessRaisedException:
        pytest.fail(f"a gloo worker raised:\n{worker_tracebacks(out_dir)}", pytrace=False)
    except mp.ProcessExitedException as exc:
        pytest.fail(f"a gloo worker died ({exc}):\n{worker_tracebacks(out_dir)}", pytrace=False)
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict]]:
    """Spawn the ranks once; each rank's per-case results, in rank order."""
    out_dir = tmp_path_factory.mktemp("gloo")
    context = mp.start_processes(
        run_rank, args=(str(out_dir / "store"), str(out_dir)), nprocs=WORLD, join=False
    )
    join_or_fail(context, out_dir, SPAWN_TIMEOUT_S)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def results_for(rank_results: list[dict[str, dict]], name: str) -> list[dict]:
    """One case's result on every rank, in rank order."""
    return [results[name] for results in rank_results]


@pytest.fixture(scope="module")
def single_process() -> dict[str, dict]:
    """Each case's loss and gradients in this process (no group) on the concatenated batch."""
    assert not (dist.is_available() and dist.is_initialized())
    batch = full_batch()
    return {name: loss_and_grads(case, batch, slice(None), True) for name, case in CASES.items()}


@pytest.mark.parametrize("name", CASES)
def test_mean_of_rank_losses_is_single_process_loss(
    name: str, rank_results: list[dict], single_process: dict[str, dict]
) -> None:
    per_rank = results_for(rank_results, name)
    mean = torch.stack([r["loss"] for r in per_rank]).mean()
    torch.testing.assert_close(mean, single_process[name]["loss"], **TOL)


@pytest.mark.parametrize("name", CASES)
def test_averaged_row_gradients_are_single_process_gradients(
    name: str, rank_results: list[dict], single_process: dict[str, dict]
) -> None:
    expected = single_process[name]["grads"]
    for rank, result in enumerate(results_for(rank_results, name)):
        for row_input in CASES[name].rows:
            torch.testing.assert_close(
                result["grads"][row_input] / WORLD,
                expected[row_input][rank_rows(rank)],
                **TOL,
                msg=lambda m, r=rank, i=row_input: f"rank {r}, d/d{i}: {m}",
            )


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.params])
def test_averaged_parameter_gradients_are_single_process_gradients(
    name: str, rank_results: list[dict], single_process: dict[str, dict]
) -> None:
    per_rank = results_for(rank_results, name)
    for param in CASES[name].params:
        mean = torch.stack([r["grads"][param] for r in per_rank]).mean(dim=0)
        torch.testing.assert_close(mean, single_process[name]["grads"][param], **TOL)


@pytest.mark.parametrize("name", CASES)
def test_no_gather_is_the_loss_of_the_rank_rows_alone(name: str, rank_results: list[dict]) -> None:
    batch = full_batch()
    for rank, result in enumerate(results_for(rank_results, name)):
        alone = loss_and_grads(CASES[name], batch, rank_rows(rank), gather=True)["loss"]
        torch.testing.assert_close(
            result["local_loss"], alone, **TOL, msg=lambda m, r=rank: f"rank {r}: {m}"
        )
