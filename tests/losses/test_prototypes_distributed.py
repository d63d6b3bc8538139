"""DINO, SwAV, Sinkhorn codes and the DINO centre under a 2-rank gloo group against one process
on the concatenated batch: the mean of the rank losses and the rank-averaged row gradients are
the single-process ones (as for every loss, tests/losses/test_distributed.py), each rank's codes
are its rows of the single-process codes, and every rank's centre is the single-process centre.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor

import contrastkit.losses as L

from .test_distributed import gloo_worker, join_or_fail

WORLD, ROWS, DIM, PROTOTYPES = 2, 6, 8, 40
VIEWS, GLOBAL = 4, 2
TOL = {"rtol": 1e-10, "atol": 1e-12}


def full_batch() -> dict[str, Tensor]:
    """Float64 inputs for all ranks together: (views, rows, dim) student/teacher/scores."""
    g = torch.Generator().manual_seed(0)
    n = WORLD * ROWS
    scores = (
        torch.nn.functional.normalize(
            torch.randn(VIEWS, n, DIM, generator=g, dtype=torch.float64), dim=-1
        )
        @ torch.nn.functional.normalize(
            torch.randn(PROTOTYPES, DIM, generator=g, dtype=torch.float64), dim=-1
        ).T
    )
    return {
        "student": 3 * torch.randn(VIEWS, n, DIM, generator=g, dtype=torch.float64),
        "teacher": 3 * torch.randn(GLOBAL, n, DIM, generator=g, dtype=torch.float64),
        "center": torch.randn(DIM, generator=g, dtype=torch.float64),
        "scores": scores,
    }


def compute(batch: dict[str, Tensor], rows: slice) -> dict[str, Tensor]:
    """Losses, gradients, codes and the next centre for `rows` of the batch."""
    student = batch["student"][:, rows].clone().requires_grad_(True)
    scores = batch["scores"][:, rows].clone().requires_grad_(True)
    teacher = list(batch["teacher"][:, rows])
    dino = L.dino(list(student), teacher, batch["center"])
    codes = [L.sinkhorn(scores[g].detach()) for g in range(GLOBAL)]
    swav = L.swav(list(scores), codes)
    (d_student,) = torch.autograd.grad(dino, student)
    (d_scores,) = torch.autograd.grad(swav, scores)
    return {
        "dino": dino.detach(),
        "swav": swav.detach(),
        "d_student": d_student,
        "d_scores": d_scores,
        "codes": torch.stack(codes),
        "center": L.dino_center(batch["center"], teacher, momentum=0.8),
    }


def run_rank(rank: int, store: str, out_dir: str) -> None:
    with gloo_worker(rank, WORLD, store, out_dir):
        result = compute(full_batch(), slice(rank * ROWS, (rank + 1) * ROWS))
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Tensor]]:
    out_dir = tmp_path_factory.mktemp("gloo_prototypes")
    context = mp.start_processes(
        run_rank, args=(str(out_dir / "store"), str(out_dir)), nprocs=WORLD, join=False
    )
    join_or_fail(context, out_dir, 90.0)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict[str, Tensor]:
    return compute(full_batch(), slice(None))


@pytest.mark.parametrize("loss", ["dino", "swav"])
def test_mean_of_rank_losses_is_the_single_process_loss(loss: str, ranks, single) -> None:
    torch.testing.assert_close(torch.stack([r[loss] for r in ranks]).mean(), single[loss], **TOL)


@pytest.mark.parametrize("grad", ["d_student", "d_scores"])
def test_rank_averaged_gradients_are_the_single_process_gradients(grad: str, ranks, single):
    for rank, result in enumerate(ranks):
        expected = single[grad][:, rank * ROWS : (rank + 1) * ROWS]
        torch.testing.assert_close(result[grad] / WORLD, expected, **TOL)


def test_each_rank_gets_its_rows_of_the_single_process_codes(ranks, single) -> None:
    for rank, result in enumerate(ranks):
        expected = single["codes"][:, rank * ROWS : (rank + 1) * ROWS]
        torch.testing.assert_close(result["codes"], expected, **TOL)
    # Gathering mattered: one rank's codes alone are not the same.
    alone = L.sinkhorn(full_batch()["scores"][0, :ROWS], gather=False)
    assert not torch.allclose(alone, single["codes"][0, :ROWS], rtol=1e-3, atol=0)


def test_every_rank_has_the_single_process_centre(ranks, single) -> None:
    for result in ranks:
        torch.testing.assert_close(result["center"], single["center"], **TOL)
