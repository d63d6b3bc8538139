"""Image folders: a flat folder is an unlabelled split, and each in-memory folder carries its own
per-channel statistics, measured once and cached with the decoded images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit.data import datasets, load_dataset
from contrastkit.data.datasets import channel_stats


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))


def write_images(folder: Path, count: int, seed: int = 0, side: int = 8) -> list[Path]:
    """`count` PNG and JPEG files of coloured noise whose channels differ in mean and spread."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = np.stack(
            [
                rng.integers(0, 80, (side, side)),  # dark red
                rng.integers(60, 250, (side, side)),  # bright, spread green
                np.full((side, side), 120) + rng.integers(0, 8, (side, side)),  # flat blue
            ],
            axis=-1,
        ).astype(np.uint8)
        path = folder / f"img{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(pixels).save(path, quality=95)
        paths.append(path)
    return paths


def numpy_stats(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The reference: numpy's mean and std over every decoded pixel, per channel, in [0, 1]."""
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]) / 255.0
    return pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2))


@pytest.mark.parametrize("layout", ["train/", ""])
def test_flat_folder_is_an_unlabelled_training_split(tmp_path: Path, layout: str) -> None:
    paths = write_images(tmp_path / "data" / layout, 6)
    data = load_dataset("imagefolder", "train", tmp_path / "data")
    assert data.classes == [] and data.labels.tolist() == [-1] * 6
    decoded = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))) for p in sorted(paths)]
    assert torch.equal(data.images, torch.stack(decoded).permute(0, 3, 1, 2))


def test_flat_folder_has_no_test_split(tmp_path: Path) -> None:
    write_images(tmp_path / "train", 2)
    with pytest.raises(datasets.DatasetNotFoundError, match="test split not found"):
        load_dataset("imagefolder", "test", tmp_path)


def test_folder_statistics_equal_numpys_and_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_images(tmp_path / "data" / "train" / "a", 5) + write_images(
        tmp_path / "data" / "train" / "b", 4, seed=1
    )
    data = load_dataset("imagefolder", "train", tmp_path / "data")
    mean, std = numpy_stats(paths)
    np.testing.assert_allclose(data.mean, mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(data.std, std, rtol=0, atol=1e-12)
    assert data.mean[0] < 0.2 < data.mean[1] and data.std[2] < data.std[1] / 2  # not ImageNet
    part = data.subset(torch.tensor([0, 7]))
    assert (part.mean, part.std) == (data.mean, data.std)  # the split's, not the part's

    monkeypatch.setattr(datasets, "_decode_files", _no_decoding)
    monkeypatch.setattr(datasets, "channel_stats", _no_decoding)
    cached = load_dataset("imagefolder", "train", tmp_path / "data")
    assert (cached.mean, cached.std) == (data.mean, data.std)


def _no_decoding(*_: object) -> None:
    raise AssertionError("decoded or measured again despite the cache")


def test_channel_stats_of_a_constant_channel_never_divide_by_zero() -> None:
    images = torch.full((3, 1, 4, 4), 7, dtype=torch.uint8)
    mean, std = channel_stats(images)
    assert mean == (7 / 255,) and std == (1 / 255,)


def test_array_datasets_keep_their_presets_statistics() -> None:
    assert load_dataset("digits").mean is None
