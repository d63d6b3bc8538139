"""Dataset loading: each on-disk format round-trips exactly, the cache is reused, errors name paths.

Fixtures are written in the exact on-disk formats (CIFAR pickles, STL-10 column-major binaries,
gzipped IDX, class-folder trees of PNGs) so pixel values can be checked byte for byte.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit.data import (
    DATASET_NAMES,
    IMAGENET100_CLASSES,
    CorruptImageError,
    DatasetNotFoundError,
    InMemoryImages,
    StreamingImages,
    datasets,
    holdout_split,
    load_dataset,
)

SHARED_DATA = (Path(__file__).parents[2] / "../shared/data").resolve()
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real development data not present at {SHARED_DATA}"
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every test's cache out of the user's home."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(cache))
    return cache


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _one_line_error(error: pytest.ExceptionInfo[BaseException], *fragments: str) -> str:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --- format writers ----------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_fashion(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    written = {}
    for split, prefix, n in (("train", "train", 7), ("test", "t10k", 4)):
        images = _rng(n).integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = _rng(n + 1).integers(0, 10, n, dtype=np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
        written[split] = (images, labels)
    return written


CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _write_cifar10(root: Path, per_batch: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Real CIFAR-10 pickles: rows of 1024 red, 1024 green, 1024 blue bytes (row-major)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows, labels = {}, {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        rows[name] = _rng(i).integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels[name] = _rng(100 + i).integers(0, 10, per_batch).tolist()
        batch = {"batch_label": name, "labels": labels[name], "data": rows[name]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    train = [f"data_batch_{k}" for k in range(1, 6)]
    return {
        "train": (np.concatenate([rows[b] for b in train]), [y for b in train for y in labels[b]]),
        "test": (rows["test_batch"], labels["test_batch"]),
    }


def _write_cifar100(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for seed, split in enumerate(("train", "test")):
        rows = _rng(seed).integers(0, 256, (5, 3072), dtype=np.uint8)
        fine = [99, 3, 42, 0, 57]
        coarse = [f // 5 for f in fine]
        entry = {"data": rows, "fine_labels": fine, "coarse_labels": coarse, "filenames": []}
        (folder / split).write_bytes(pickle.dumps(entry))
        written[split] = (rows, fine)
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": []}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return written


STL10_IMAGE_BYTES = 3 * 96 * 96


def _write_stl10(root: Path) -> dict[str, tuple[bytes, np.ndarray | None]]:
    """STL-10 binaries: raw bytes per image, each channel stored column by column."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    written: dict[str, tuple[bytes, np.ndarray | None]] = {}
    for seed, (prefix, n, labelled) in enumerate(
        (("train", 3, True), ("test", 2, True), ("unlabeled", 4, False))
    ):
        raw = _rng(seed).integers(0, 256, n * STL10_IMAGE_BYTES, dtype=np.uint8).tobytes()
        (folder / f"{prefix}_X.bin").write_bytes(raw)
        labels = None
        if labelled:
            labels = _rng(10 + seed).integers(1, 11, n, dtype=np.uint8)  # 1-based on disk
            (folder / f"{prefix}_y.bin").write_bytes(labels.tobytes())
        written[prefix] = (raw, labels)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return written


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array losslessly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _write_tree(
    root: Path, layout: dict[str, dict[str, int]], size: int = 6
) -> dict[str, np.ndarray]:
    """``layout``: split dir -> class -> image count; returns the pixels written per file."""
    written = {}
    seed = 0
    for split, classes in layout.items():
        for cls, count in classes.items():
            for i in range(count):
                seed += 1
                pixels = _rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
                path = root / split / cls / f"{i:03d}.png"
                _write_png(path, pixels)
                written[str(path)] = pixels
    return written


def _chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1)


# --- digits ------------------------------------------------------------------------------


def test_digits_scaled_to_uint8_and_split_by_last_fifth_of_each_class() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert isinstance(train, InMemoryImages)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert len(train) + len(test) == len(bunch.target) == 1797
    assert train.classes == [str(d) for d in range(10)]
    # test = the last 20% of each class, in order; pixels 0..16 -> 0..255
    for digit in range(10):
        members = np.flatnonzero(bunch.target == digit)
        held = members[len(members) - round(len(members) * 0.2) :]
        got = test.images[test.labels == digit]
        expected = (bunch.images[held].astype(np.int64) * 255 + 8) // 16
        assert torch.equal(got[:, 0], torch.from_numpy(expected).to(torch.uint8))
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


# --- fashion-mnist -----------------------------------------------------------------------


def test_fashion_mnist_round_trips_idx_files(tmp_path: Path) -> None:
    written = _write_fashion(tmp_path)
    for split, (images, labels) in written.items():
        data = load_dataset("fashion-mnist", split, tmp_path)
        assert isinstance(data, InMemoryImages)
        assert torch.equal(data.images, torch.from_numpy(images)[:, None])
        assert data.labels.tolist() == labels.tolist()
        assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert load_dataset("fashion_mnist", "test", tmp_path).images.shape == (4, 1, 28, 28)


def test_fashion_mnist_truncated_file_is_reported_with_its_path(tmp_path: Path) -> None:
    _write_fashion(tmp_path)
    path = tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion-mnist", "train", tmp_path)
    _one_line_error(error, str(path.parent), "train-images-idx3-ubyte.gz", "--download")


# --- CIFAR -------------------------------------------------------------------------------


def test_cifar10_round_trips_pickled_batches(tmp_path: Path) -> None:
    written = _write_cifar10(tmp_path)
    for split, (rows, labels) in written.items():
        data = load_dataset("cifar10", split, tmp_path)
        assert data.images.shape == (len(rows), 3, 32, 32)
        assert data.classes == CIFAR10_NAMES
        assert data.labels.tolist() == labels
        for i, c, y, x in [(0, 0, 0, 0), (1, 2, 31, 31), (2, 1, 5, 17), (len(rows) - 1, 2, 9, 3)]:
            assert data.images[i, c, y, x] == rows[i, c * 1024 + y * 32 + x]
        assert np.array_equal(data.images.reshape(len(rows), -1).numpy(), rows)


def test_cifar10_missing_folder_names_path_and_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar10", "train", tmp_path)
    _one_line_error(error, str(tmp_path / "cifar-10-batches-py"), "--download", "CIFAR-10")


def test_cifar10_missing_batch_is_incomplete(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar10", "train", tmp_path)
    _one_line_error(error, "incomplete", "data_batch_3", str(tmp_path))
    assert len(load_dataset("cifar10", "test", tmp_path)) == 3  # the test split is whole


def test_cifar10_damaged_pickle_is_incomplete(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar10", "test", tmp_path)
    _one_line_error(error, "test_batch", str(path.parent))


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    written = _write_cifar100(tmp_path)
    for split, (rows, fine) in written.items():
        data = load_dataset("cifar100", split, tmp_path)
        assert data.labels.tolist() == fine
        assert len(data.classes) == 100 and data.classes[99] == "fine99"
        assert np.array_equal(data.images.reshape(len(rows), -1).numpy(), rows)


# --- STL-10 ------------------------------------------------------------------------------


def test_stl10_reads_column_major_binaries_for_every_split(tmp_path: Path) -> None:
    written = _write_stl10(tmp_path)
    coords = [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (0, 2, 95, 3), (1, 1, 40, 77)]
    for split in ("train", "test", "unlabeled"):
        raw, labels = written[split]
        data = load_dataset("stl10", split, tmp_path)
        assert data.images.shape == (len(raw) // STL10_IMAGE_BYTES, 3, 96, 96)
        for i, c, y, x in coords:  # byte (i, c, x, y): channel planes stored column by column
            assert data.images[i, c, y, x] == raw[i * STL10_IMAGE_BYTES + c * 96 * 96 + x * 96 + y]
        expected = [-1] * len(data) if labels is None else (labels.astype(int) - 1).tolist()
        assert data.labels.tolist() == expected
        assert data.classes[7] == "monkey"
    both = load_dataset("stl10", "train+unlabeled", tmp_path)
    train = load_dataset("stl10", "train", tmp_path)
    unlabeled = load_dataset("stl10", "unlabeled", tmp_path)
    assert torch.equal(both.images, torch.cat([train.images, unlabeled.images]))
    assert both.labels.tolist() == train.labels.tolist() + [-1] * len(unlabeled)


def test_stl10_truncated_binary_is_incomplete(tmp_path: Path) -> None:
    _write_stl10(tmp_path)
    path = tmp_path / "stl10_binary" / "test_X.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("stl10", "test", tmp_path)
    _one_line_error(error, "test_X.bin", "truncated", str(path.parent))


def test_stl10_has_no_train_unlabeled_split_without_unlabeled_file(tmp_path: Path) -> None:
    _write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").unlink()
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("stl10", "train+unlabeled", tmp_path)
    _one_line_error(error, "unlabeled_X.bin")


# --- download ----------------------------------------------------------------------------


def test_download_goes_through_torchvision_only_when_files_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    calls = []

    def fake_cifar10(root: str, download: bool, train: bool) -> None:
        calls.append((root, download))
        _write_cifar10(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    assert len(load_dataset("cifar10", "test", tmp_path, download=True)) == 3
    assert calls == [(str(tmp_path), True)]
    load_dataset("cifar10", "train", tmp_path, download=True)
    assert len(calls) == 1


def test_failed_download_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(**_: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "STL10", offline)
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("stl10", "train", tmp_path, download=True)
    _one_line_error(error, "network is unreachable", str(tmp_path))


# --- image folders -----------------------------------------------------------------------


def test_imagefolder_round_trips_pixels_with_sorted_classes(tmp_path: Path) -> None:
    layout = {"train": {"zebra": 2, "ant": 3, "moth": 1}, "val": {"ant": 1, "moth": 1, "zebra": 1}}
    written = _write_tree(tmp_path, layout)
    train = load_dataset("imagefolder", "train", tmp_path)
    test = load_dataset("imagefolder", "test", tmp_path)
    assert isinstance(train, InMemoryImages)
    assert train.classes == test.classes == ["ant", "moth", "zebra"]
    assert train.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert test.labels.tolist() == [0, 1, 2]
    files = sorted(p for p in written if "/train/" in p)
    expected = [_chw(written[p]) for p in sorted(files, key=lambda p: (Path(p).parent.name, p))]
    assert torch.equal(train.images, torch.stack(expected))


def test_imagefolder_test_split_may_be_named_test(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": {"a": 1, "b": 1}, "test": {"a": 2, "b": 1}})
    assert load_dataset("imagefolder", "test", tmp_path).labels.tolist() == [0, 0, 1]


def test_missing_test_split_names_the_paths_tried(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": {"a": 1}})
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("imagefolder", "test", tmp_path)
    _one_line_error(error, str(tmp_path / "test"), str(tmp_path / "val"))


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("imagefolder", "train", tmp_path / "nowhere")
    _one_line_error(error, str(tmp_path / "nowhere"))


def test_test_class_without_train_folder_is_rejected(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": {"a": 1}, "val": {"a": 1, "b": 1}})
    with pytest.raises(ValueError, match="is missing from") as error:
        load_dataset("imagefolder", "test", tmp_path)
    _one_line_error(error, str(tmp_path / "val" / "b"), str(tmp_path / "train"))


def test_mixed_sizes_need_an_image_size(tmp_path: Path) -> None:
    wide = _rng(1).integers(0, 256, (4, 8, 3), dtype=np.uint8)  # H=4, W=8
    _write_png(tmp_path / "train" / "a" / "wide.png", wide)
    small = _rng(2).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    _write_png(tmp_path / "train" / "b" / "small.png", small)
    with pytest.raises(ValueError, match="differ in size") as error:
        load_dataset("imagefolder", "train", tmp_path)
    _one_line_error(error, "wide.png", "small.png", "8x4", "4x4")
    data = load_dataset("imagefolder", "train", tmp_path, image_size=4)
    # shorter side is already 4: no resampling, just the center 4 columns of the wide image
    assert torch.equal(data.images[0], _chw(wide[:, 2:6]))
    assert torch.equal(data.images[1], _chw(small))


def test_image_size_resizes_shorter_side_then_center_crops_like_torchvision(
    tmp_path: Path,
) -> None:
    import torchvision.transforms.functional as TF

    for shape in ((10, 15, 3), (17, 9, 3)):
        pixels = _rng(shape[0]).integers(0, 256, shape, dtype=np.uint8)
        _write_png(tmp_path / str(shape[0]) / "train" / "a" / "x.png", pixels)
        data = load_dataset("imagefolder", "train", tmp_path / str(shape[0]), image_size=6)
        expected = TF.center_crop(TF.resize(Image.fromarray(pixels), 6), [6, 6])
        assert torch.equal(data.images[0], _chw(np.asarray(expected)))


def test_corrupt_image_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_tree(tmp_path, {"train": {"a": 3, "b": 3}})
    bad = tmp_path / "train" / "b" / "001.png"
    bad.write_bytes(bad.read_bytes()[:40])
    monkeypatch.setattr(datasets, "_CHUNK", 2)  # several chunks, so the error crosses processes
    for workers in (1, 2):
        with pytest.raises(CorruptImageError) as error:
            load_dataset("imagefolder", "train", tmp_path, workers=workers)
        _one_line_error(error, str(bad))


def test_parallel_decoding_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_tree(tmp_path, {"train": {"a": 4, "b": 3}})
    monkeypatch.setattr(datasets, "_CHUNK", 2)
    serial = load_dataset("imagefolder", "train", tmp_path, workers=1, cache_dir=tmp_path / "c1")
    parallel = load_dataset("imagefolder", "train", tmp_path, workers=2, cache_dir=tmp_path / "c2")
    assert torch.equal(serial.images, parallel.images)


def test_streaming_gives_the_same_samples(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": {"a": 2, "b": 2}})
    memory = load_dataset("imagefolder", "train", tmp_path)
    stream = load_dataset("imagefolder", "train", tmp_path, stream=True)
    assert isinstance(stream, StreamingImages) and len(stream) == len(memory)
    for i in range(len(memory)):
        image, label = stream[i]
        assert torch.equal(image, memory.images[i]) and int(label) == int(memory.labels[i])
    part = stream.subset(torch.tensor([3, 0]))
    assert part.labels.tolist() == [1, 0] and torch.equal(part[0][0], memory.images[3])


# --- cache -------------------------------------------------------------------------------


def _fail(*_: object, **__: object) -> None:
    raise AssertionError("decoded again despite a cache hit")


def test_cache_hit_returns_identical_tensors_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    _write_tree(data_dir, {"train": {"a": 2, "b": 2}})
    before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*"))
    cache = tmp_path / "somewhere"
    first = load_dataset("imagefolder", "train", data_dir, cache_dir=cache)
    assert [p.suffix for p in cache.iterdir()] == [".pt"]
    monkeypatch.setattr(datasets, "_decode_files", _fail)
    second = load_dataset("imagefolder", "train", data_dir, cache_dir=cache)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.classes == second.classes
    assert sorted(p.relative_to(data_dir) for p in data_dir.rglob("*")) == before


def test_cache_of_array_dataset_skips_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_fashion(tmp_path)
    first = load_dataset("fashion-mnist", "train", tmp_path)
    monkeypatch.setattr(datasets, "_read_idx", _fail)
    assert torch.equal(load_dataset("fashion-mnist", "train", tmp_path).images, first.images)


def test_changed_source_invalidates_cache(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _write_tree(data_dir, {"train": {"a": 2}})
    assert len(load_dataset("imagefolder", "train", data_dir)) == 2
    _write_png(data_dir / "train" / "a" / "new.png", np.zeros((6, 6, 3), dtype=np.uint8))
    assert len(load_dataset("imagefolder", "train", data_dir)) == 3


def test_cache_dir_defaults_to_env_var(tmp_path: Path, _private_cache: Path) -> None:
    _write_fashion(tmp_path)
    load_dataset("fashion-mnist", "test", tmp_path)
    assert [p.name.startswith("fashion-mnist-test-") for p in _private_cache.iterdir()] == [True]
    assert datasets.default_cache_dir() == _private_cache


def test_unreadable_cache_is_rebuilt(tmp_path: Path, _private_cache: Path) -> None:
    _write_fashion(tmp_path)
    first = load_dataset("fashion-mnist", "test", tmp_path)
    (cached,) = _private_cache.iterdir()
    cached.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="rebuilding"):
        again = load_dataset("fashion-mnist", "test", tmp_path)
    assert torch.equal(again.images, first.images)
    assert torch.load(cached, weights_only=True)["images"].shape == first.images.shape


def test_unwritable_cache_only_warns(tmp_path: Path) -> None:
    _write_fashion(tmp_path)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.warns(UserWarning, match="cannot write dataset cache"):
        data = load_dataset("fashion-mnist", "test", tmp_path, cache_dir=not_a_dir)
    assert len(data) == 4


# --- presets -----------------------------------------------------------------------------


def test_imagenet100_class_list() -> None:
    assert len(IMAGENET100_CLASSES) == len(set(IMAGENET100_CLASSES)) == 100
    assert all(len(c) == 9 and c[0] == "n" and c[1:].isdigit() for c in IMAGENET100_CLASSES)
    assert IMAGENET100_CLASSES[0] == "n02869837" and IMAGENET100_CLASSES[-1] == "n02090622"


def test_imagenet100_keeps_only_its_classes_and_streams(tmp_path: Path) -> None:
    wanted = {"train": {c: 1 for c in IMAGENET100_CLASSES} | {"n01440764": 2}}
    wanted["val"] = {c: 1 for c in IMAGENET100_CLASSES[:3]}
    written = _write_tree(tmp_path, wanted, size=2)
    train = load_dataset("imagenet100", "train", tmp_path)
    assert isinstance(train, StreamingImages)
    assert train.classes == sorted(IMAGENET100_CLASSES) and len(train) == 100
    assert train.labels.tolist() == list(range(100))
    image, _ = train[5]
    assert torch.equal(image, _chw(written[train.paths[5]]))
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("imagenet100", "test", tmp_path)
    _one_line_error(error, "incomplete", str(tmp_path / "val"))


def test_imagenet100_missing_class_folder(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": {c: 1 for c in IMAGENET100_CLASSES[1:]}}, size=2)
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("imagenet100", "train", tmp_path)
    _one_line_error(error, "1 of its 100", IMAGENET100_CLASSES[0], str(tmp_path / "train"))


def test_tiny_imagenet_layout(tmp_path: Path) -> None:
    """train/<wnid>/images/*.JPEG, and a flat val/images/ labelled by val_annotations.txt."""
    pixels = {}
    for k, wnid in enumerate(("n02", "n01")):
        pixels[wnid] = _rng(k).integers(0, 256, (4, 4, 3), dtype=np.uint8)
        _write_png(tmp_path / "train" / wnid / "images" / f"{wnid}_0.png", pixels[wnid])
        (tmp_path / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
        _write_png(tmp_path / "val" / "images" / f"val_{k}.png", pixels[wnid])
    (tmp_path / "val" / "val_annotations.txt").write_text(
        "val_0.png\tn02\t0\t0\t3\t3\nval_1.png\tn01\t0\t0\t3\t3\n"
    )
    train = load_dataset("tiny-imagenet", "train", tmp_path)
    val = load_dataset("tiny-imagenet", "test", tmp_path)
    assert train.classes == val.classes == ["n01", "n02"]
    assert train.labels.tolist() == [0, 1] and val.labels.tolist() == [1, 0]
    assert torch.equal(val.images[0], _chw(pixels["n02"]))


def test_food101_layout(tmp_path: Path) -> None:
    """images/<class>/<id>.jpg with meta/classes.txt and meta/{train,test}.txt lists."""
    for cls, ids in (("apple_pie", (11, 12)), ("baklava", (21, 22))):
        for i in ids:
            _write_png(tmp_path / "images" / cls / f"{i}.jpg", np.full((4, 4, 3), i, np.uint8))
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "classes.txt").write_text("apple_pie\nbaklava\n")
    (tmp_path / "meta" / "train.txt").write_text("apple_pie/11\nbaklava/21\nbaklava/22\n")
    (tmp_path / "meta" / "test.txt").write_text("apple_pie/12\n")
    train = load_dataset("food101", "train", tmp_path, stream=False)
    assert train.labels.tolist() == [0, 1, 1]
    assert train.images[:, 0, 0, 0].tolist() == [11, 21, 22]  # PNG bytes, lossless
    test = load_dataset("food101", "test", tmp_path)
    assert isinstance(test, StreamingImages) and test.labels.tolist() == [0]
    (tmp_path / "meta" / "test.txt").write_text("apple_pie/99\n")
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("food101", "test", tmp_path)
    _one_line_error(error, str(tmp_path / "images" / "apple_pie" / "99.jpg"))


# --- holdout and argument checks ---------------------------------------------------------


def test_holdout_takes_exactly_the_last_tenth_of_each_class() -> None:
    labels = torch.tensor([i % 3 for i in range(60)] + [1] * 10)  # class sizes 20, 30, 20
    kept, held = holdout_split(labels, 0.1)
    # class 0: ..., 54, 57 | class 1: ..., 58, 60..69 | class 2: ..., 56, 59
    assert held.tolist() == [54, 56, 57, 59, 67, 68, 69]
    assert sorted(kept.tolist() + held.tolist()) == list(range(70))
    assert kept.tolist() == sorted(kept.tolist())


def test_holdout_fraction_bounds() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    assert holdout_split(labels, 0.0)[1].numel() == 0
    assert holdout_split(labels, 1.0)[0].numel() == 0
    with pytest.raises(ValueError):
        holdout_split(labels, 1.5)


def test_in_memory_subset_and_validation() -> None:
    data = InMemoryImages(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4), ["x"])
    assert data.subset(torch.tensor([3, 1])).labels.tolist() == [3, 1]
    with pytest.raises(ValueError, match="uint8"):
        InMemoryImages(torch.zeros(4, 1, 2, 2), torch.arange(4), ["x"])
    with pytest.raises(ValueError, match="int64"):
        InMemoryImages(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(3), ["x"])


def test_unknown_names_splits_and_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist", "train", tmp_path)
    with pytest.raises(ValueError, match="no split 'unlabeled'"):
        load_dataset("cifar10", "unlabeled", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="data-dir"):
        load_dataset("cifar10", "train")
    with pytest.raises(ValueError, match="8x8"):
        load_dataset("digits", "train", image_size=32)
    with pytest.raises(ValueError, match="streaming"):
        load_dataset("digits", "train", stream=True)
    assert "digits" in DATASET_NAMES and "imagenet100" in DATASET_NAMES


# --- real development data ---------------------------------------------------------------


@needs_shared_data
def test_real_fashion_mnist_and_its_cache() -> None:
    start = time.perf_counter()
    train = load_dataset("fashion-mnist", "train", SHARED_DATA)
    decode_s = time.perf_counter() - start
    assert train.images.shape == (60000, 1, 28, 28)
    assert train.labels.bincount().tolist() == [6000] * 10
    start = time.perf_counter()
    again = load_dataset("fashion-mnist", "train", SHARED_DATA)
    assert time.perf_counter() - start < decode_s
    assert torch.equal(again.images, train.images)
    assert (
        load_dataset("fashion-mnist", "test", SHARED_DATA).labels.bincount().tolist() == [1000] * 10
    )


@needs_shared_data
def test_real_cifar10_jpegs_decode_like_pil(tmp_path: Path) -> None:
    """A few real JPEGs, linked (not copied) into a small tree."""
    source = SHARED_DATA / "cifar10" / "train"
    for cls in ("airplane", "truck"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for name in ("0000.jpg", "4999.jpg"):
            (tmp_path / "train" / cls / name).symlink_to(source / cls / name)
    data = load_dataset("imagefolder", "train", tmp_path)
    assert data.images.shape == (4, 3, 32, 32) and data.classes == ["airplane", "truck"]
    with Image.open(source / "truck" / "4999.jpg") as image:
        expected = _chw(np.asarray(image.convert("RGB")))
    assert torch.equal(data.images[3], expected)


@needs_shared_data
def test_real_cifar10_folder_has_no_test_split() -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("imagefolder", "test", SHARED_DATA / "cifar10")
    _one_line_error(error, str(SHARED_DATA / "cifar10" / "test"))
