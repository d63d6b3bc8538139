"""DeviceBatches: exact coverage per epoch, reproducible shuffles, disjoint distributed shards."""

from __future__ import annotations

import pytest
import torch

from contrastkit.data import DeviceBatches


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel encodes the sample index, so image/label pairing is checkable."""
    labels = torch.arange(n)
    images = (labels % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    return images, labels


def _served(loader: DeviceBatches) -> list[int]:
    served = []
    for images, labels in loader:
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert torch.equal(images[:, 0, 0, 0], (labels % 256).to(torch.uint8))
        served += labels.tolist()
    return served


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_every_index_exactly_once_per_epoch_without_drop_last() -> None:
    loader = DeviceBatches(*_data(103), 10, drop_last=False, generator=_seeded(1))
    sizes = [len(labels) for _, labels in loader]
    assert sizes == [10] * 10 + [3] and len(loader) == 11
    for _ in range(2):
        served = _served(loader)
        assert sorted(served) == list(range(103)) and served != list(range(103))


def test_drop_last_serves_only_full_batches_without_repeats() -> None:
    loader = DeviceBatches(*_data(103), 10, generator=_seeded(1))
    served = _served(loader)
    assert len(loader) == 10 and len(served) == 100 == len(set(served))


def test_same_seed_and_epoch_give_the_same_order() -> None:
    first = DeviceBatches(*_data(50), 5, generator=_seeded(7))
    second = DeviceBatches(*_data(50), 5, generator=_seeded(7))
    first.set_epoch(3)
    second.set_epoch(3)
    assert _served(first) == _served(second)


def test_epochs_and_seeds_change_the_order() -> None:
    loader = DeviceBatches(*_data(50), 5, generator=_seeded(7))
    orders = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        orders.append(_served(loader))
    assert len({tuple(o) for o in orders}) == 3
    other_seed = DeviceBatches(*_data(50), 5, generator=_seeded(8))
    other_seed.set_epoch(0)
    assert _served(other_seed) != orders[0]


def test_iterating_advances_the_epoch_unless_it_is_set() -> None:
    loader = DeviceBatches(*_data(40), 4, generator=_seeded(0))
    epoch0, epoch1 = _served(loader), _served(loader)
    assert epoch0 != epoch1 and loader.epoch == 2
    loader.set_epoch(1)
    assert _served(loader) == epoch1
    assert loader.indices(0).tolist() == epoch0


def test_no_shuffle_serves_in_order() -> None:
    loader = DeviceBatches(*_data(12), 5, shuffle=False, drop_last=False)
    assert _served(loader) == list(range(12))


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_get_disjoint_equal_shards_of_one_permutation(drop_last: bool) -> None:
    n, batch_size, world_size = 103, 4, 3
    loaders = [
        DeviceBatches(
            *_data(n),
            batch_size,
            drop_last=drop_last,
            generator=_seeded(5),
            rank=rank,
            world_size=world_size,
        )
        for rank in range(world_size)
    ]
    for loader in loaders:
        loader.set_epoch(2)
    shards = [_served(loader) for loader in loaders]
    assert len({len(loader) for loader in loaders}) == 1
    assert all(len(list(loader)) == len(loader) for loader in loaders)
    every = [i for shard in shards for i in shard]
    if drop_last:
        assert len(every) == len(set(every)) == 96  # 8 full batches of 4 on each of 3 ranks
    else:  # padded by wrapping around: all 103 covered, 2 repeated to make 3 x 35
        assert set(every) == set(range(n)) and len(every) == 105
        assert all(len(shard) == 35 for shard in shards)
    single = DeviceBatches(*_data(n), batch_size, drop_last=drop_last, generator=_seeded(5))
    permutation = single.indices(2).tolist()
    assert shards[1][:3] == permutation[1:9:3]  # strided shards of the common permutation


def test_more_ranks_than_samples_still_gives_every_rank_a_batch() -> None:
    loaders = [DeviceBatches(*_data(2), 4, drop_last=False, rank=r, world_size=5) for r in range(5)]
    assert [len(loader) for loader in loaders] == [1] * 5
    assert {i for loader in loaders for i in _served(loader)} == {0, 1}


def test_invalid_arguments_are_refused() -> None:
    images, labels = _data(10)
    with pytest.raises(ValueError, match="labels"):
        DeviceBatches(images, labels[:9], 2)
    with pytest.raises(ValueError, match="rank"):
        DeviceBatches(images, labels, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceBatches(images, labels, 0)
    with pytest.raises(ValueError, match="epoch"):
        DeviceBatches(images, labels, 2).set_epoch(-1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_stay_on_the_device() -> None:
    images, labels = (t.cuda() for t in _data(64))
    loader = DeviceBatches(images, labels, 16, generator=_seeded(0))
    batches = list(loader)
    assert all(x.is_cuda and y.is_cuda for x, y in batches)
    cpu = DeviceBatches(*_data(64), 16, generator=_seeded(0))
    assert [y.cpu().tolist() for _, y in batches] == [y.tolist() for _, y in cpu]
