"""The queue (memory bank): ring-buffer writes of any size, filled rows only, state in buffers,
one push per optimiser step (also with micro-batches), and the same queue on every rank."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from contrastkit.methods import build_method
from contrastkit.methods.queue import Queue
from contrastkit.models.backbones import build_backbone
from contrastkit.train.grad_cache import cached_forward
from tests.losses.test_distributed import SPAWN_TIMEOUT_S, gloo_worker, join_or_fail


def rows(start: int, n: int) -> torch.Tensor:
    """(1, n, 2) keys whose first feature is their running number."""
    values = torch.arange(start, start + n, dtype=torch.float32)
    return torch.stack([values, -values], dim=1)[None]


def test_pushes_wrap_around_a_size_that_is_not_a_multiple_of_the_batch() -> None:
    queue = Queue(size=5, dim=2)
    assert queue.rows().shape == (0, 2)
    queue.push(rows(0, 3))
    assert queue.rows()[:, 0].tolist() == [0, 1, 2]  # only filled rows
    queue.push(rows(3, 3))  # 3, 4 fill the end; 5 overwrites the oldest (0)
    assert queue.rows()[:, 0].tolist() == [5, 1, 2, 3, 4]
    queue.push(rows(6, 7))  # more than the size: the newest 5 (8..12) survive
    assert sorted(queue.rows()[:, 0].tolist()) == [8, 9, 10, 11, 12]
    queue.push(rows(13, 1))  # and the next push overwrites the oldest of them (8)
    assert sorted(queue.rows()[:, 0].tolist()) == [9, 10, 11, 12, 13]


def test_state_is_in_buffers_so_a_checkpoint_restores_it() -> None:
    queue = Queue(size=4, dim=2)
    queue.push(rows(0, 3), torch.tensor([7, 8, 9]))
    restored = Queue(size=4, dim=2)
    restored.load_state_dict(queue.state_dict())
    restored.push(rows(3, 2))
    queue.push(rows(3, 2))
    assert torch.equal(restored.keys, queue.keys) and torch.equal(restored.labels, queue.labels)
    assert restored.row_labels().tolist() == [-1, 8, 9, -1]


def _moco(queue_size: int = 64):
    torch.manual_seed(0)
    backbone = build_backbone("small-cnn", 8, in_channels=1)
    return build_method(
        "moco_v2",
        backbone,
        projector_options={"hidden_dim": 16, "out_dim": 8},
        queue_size=queue_size,
    )


@pytest.mark.parametrize("micro", [None, 4])
def test_the_keys_of_a_step_are_pushed_once_after_the_optimiser_step(micro: int | None) -> None:
    method = _moco()
    views = [torch.randn(12, 1, 8, 8) for _ in range(2)]
    if micro is None:
        method(views)
    else:
        cached_forward(method, views, None, micro).backward()
    assert int(method.queue.filled) == 0  # nothing before the optimiser step
    method.after_optimizer_step()
    assert int(method.queue.filled) == 12 and method.queue.keys.shape == (2, 64, 8)
    spans = [slice(0, 12)] if micro is None else [slice(i, i + 4) for i in range(0, 12, 4)]
    with torch.no_grad():  # the target embeds what the networks hold: batch or micro-batch
        keys = [torch.cat([method.target(v[span]) for span in spans]) for v in views]
    for view in range(2):
        torch.testing.assert_close(method.queue.rows(view), keys[view])
    method.after_optimizer_step()  # a skipped step pushes nothing twice
    assert int(method.queue.filled) == 12


def _rank_queue(rank: int, store: str, out_dir: str) -> None:
    with gloo_worker(rank, 2, store, out_dir):
        queue = Queue(size=5, dim=2)
        queue.push(rows(10 * rank, 3), torch.tensor([rank] * 3))
        torch.save(queue.state_dict(), Path(out_dir) / f"rank{rank}.pt")


def test_every_rank_holds_the_same_queue_of_all_ranks_keys(tmp_path: Path) -> None:
    context = mp.start_processes(
        _rank_queue, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=False
    )
    join_or_fail(context, tmp_path, SPAWN_TIMEOUT_S)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    # rank 0's rows 0, 1, 2 then rank 1's 10, 11 (12 wraps onto the oldest row)
    assert states[0]["keys"][0, :, 0].tolist() == [12, 1, 2, 10, 11]
    assert states[0]["labels"].tolist() == [1, 0, 0, 1, 1]
