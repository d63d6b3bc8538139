"""The method losses under a 2-rank gloo group against one process on the concatenated batch.

The same convention as test_distributed.py: the mean of the rank losses is the single-process
loss, each rank's row gradients divided by the world size are the single-process gradients of
those rows (a SIGReg statistic whose gradient were off by the world size fails here), and shared
inputs' gradients averaged over ranks are the single-process ones. Directions drawn inside the
loss agree across ranks even when the ranks' random states differ.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor

import contrastkit.losses as L

from .test_distributed import SPAWN_TIMEOUT_S, gloo_worker, join_or_fail

WORLD, ROWS, DIM, QUEUE, SLICES = 2, 6, 5, 7, 4
TOL = {"rtol": 1e-10, "atol": 1e-10}
Batch = dict[str, Tensor]

# name → (loss over a batch, names split across ranks by row, shared names)
CASES: dict[str, tuple[Callable[[Batch], Tensor], tuple[str, ...], tuple[str, ...]]] = {
    "byol": (lambda b: L.byol(b["p"], b["z"]), ("p", "z"), ()),
    "moco": (lambda b: L.moco(b["p"], b["z"], b["queue"], 0.3), ("p", "z"), ("queue",)),
    "moco_v3": (lambda b: L.moco_v3(b["p"], b["z"], 0.3), ("p", "z"), ()),
    "nnclr": (lambda b: L.nnclr(b["z"], b["p"], b["queue"], 0.3), ("p", "z"), ("queue",)),
    "sigreg": (lambda b: L.sigreg(b["z"], b["a"], knots=7), ("z",), ("a",)),
    "lejepa": (
        lambda b: L.lejepa(b["views"].transpose(0, 1), 2, 0.3, b["a"], knots=7),
        ("views",),
        ("a",),
    ),
}


def full_batch() -> Batch:
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    a = randn(DIM, SLICES)
    n = WORLD * ROWS
    return {
        "p": randn(n, DIM),
        "z": randn(n, DIM),
        "views": randn(n, 3, DIM),
        "queue": randn(QUEUE, DIM),
        "a": a / a.norm(dim=0),
    }


def loss_and_grads(name: str, rows: slice) -> dict[str, object]:
    fn, split, shared = CASES[name]
    batch = full_batch()
    inputs = {k: batch[k][rows].clone().requires_grad_() for k in split}
    inputs |= {k: batch[k].clone().requires_grad_() for k in shared}
    loss = fn(inputs)
    grads = torch.autograd.grad(loss, list(inputs.values()), materialize_grads=True)
    return {"loss": loss.detach(), "grads": dict(zip(inputs, grads, strict=True))}


def drawn_losses(views: Tensor) -> dict[str, Tensor]:
    """Losses whose directions are drawn inside, from a random state that differs by rank."""
    module = L.LeJEPALoss(slices=SLICES)
    module.set_step(3, 10)
    return {"sigreg_global_rng": L.sigreg(views[:, 0]), "module": module(views.transpose(0, 1), 2)}


def run_rank(rank: int, store: str, out_dir: str) -> None:
    with gloo_worker(rank, WORLD, store, out_dir):
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        results = {name: loss_and_grads(name, rows) for name in CASES}
        torch.manual_seed(100 + rank)
        results["drawn"] = drawn_losses(full_batch()["views"][rows])
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("gloo_methods")
    context = mp.start_processes(
        run_rank, args=(str(out_dir / "store"), str(out_dir)), nprocs=WORLD, join=False
    )
    join_or_fail(context, out_dir, SPAWN_TIMEOUT_S)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("name", CASES)
def test_two_ranks_equal_one_process_on_the_concatenated_batch(
    name: str, rank_results: list[dict]
) -> None:
    expected = loss_and_grads(name, slice(None))
    per_rank = [r[name] for r in rank_results]
    mean = torch.stack([r["loss"] for r in per_rank]).mean()
    torch.testing.assert_close(mean, expected["loss"], **TOL)
    _, split, shared = CASES[name]
    for rank, result in enumerate(per_rank):
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        for key in split:
            got = result["grads"][key] / WORLD
            torch.testing.assert_close(got, expected["grads"][key][rows], **TOL, msg=key)
    for key in shared:
        averaged = torch.stack([r["grads"][key] for r in per_rank]).mean(0)
        torch.testing.assert_close(averaged, expected["grads"][key], **TOL, msg=key)


def test_directions_drawn_inside_are_rank_zeros_on_every_rank(rank_results: list[dict]) -> None:
    """Ranks seeded differently still compute one statistic: the one of rank 0's directions on
    the whole batch (global RNG), or of the step's directions (the module)."""
    views = full_batch()["views"]
    torch.manual_seed(100)
    expected = L.sigreg(views[:, 0], L.draw_directions(DIM, 256, dtype=torch.float64))
    module = L.LeJEPALoss(slices=SLICES)
    module.set_step(3, 10)
    expected_module = module(views.transpose(0, 1), 2)
    for result in rank_results:  # a global statistic: the same on every rank
        torch.testing.assert_close(result["drawn"]["sigreg_global_rng"], expected, **TOL)
    module_mean = torch.stack([r["drawn"]["module"] for r in rank_results]).mean()
    torch.testing.assert_close(module_mean, expected_module, **TOL)
