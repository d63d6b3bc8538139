"""Load image datasets by name, as one uint8 tensor in memory or as a stream of image files.

Datasets that fit in memory are decoded once and cached as a ``.pt`` file under the cache
directory, so later runs load them in a fraction of a second; the data folder is only read.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import itertools
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from contrastkit.data.imagenet100_classes import IMAGENET100_CLASSES
from contrastkit.errors import DataError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from contrastkit.data.streaming import ShardImages

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
)
_CACHE_VERSION = 1  # bump when decoding changes, so stale caches are not reused
_CHUNK = 512  # images decoded per worker task
_DIGITS_TEST_FRACTION = 0.2
_STL10_SIDE = 96


class DatasetNotFoundError(DataError):
    """A dataset is missing or incomplete on disk; the message names the path and the fix."""


class CorruptImageError(DataError):
    """An image file cannot be decoded; the message names the file."""


Stats = tuple[float, ...]  # one value per channel


class InMemoryImages(Dataset[tuple[Tensor, Tensor]]):
    """Decoded images as a uint8 tensor (N, C, H, W) with int64 labels (N,); -1 marks unlabeled.

    ``mean`` and ``std`` are the per-channel statistics (of pixels in [0, 1]) measured on an
    image folder, its default normalisation; None where the dataset's preset gives them.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        classes: Sequence[str],
        mean: Stats | None = None,
        std: Stats | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}"
            )
        if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({len(images)},), got {labels.shape}")
        self.images = images
        self.labels = labels
        self.classes = list(classes)
        self.mean = tuple(mean) if mean is not None else None
        self.std = tuple(std) if std is not None else None

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def subset(self, indices: Tensor) -> InMemoryImages:
        """The samples at ``indices`` (e.g. from :func:`holdout_split`), same classes and
        statistics (those of the whole split, so every part is normalised alike)."""
        return InMemoryImages(
            self.images[indices], self.labels[indices], self.classes, self.mean, self.std
        )


class StreamingImages(Dataset[tuple[Tensor, Tensor]]):
    """Image files decoded on access to uint8 (3, H, W), for folders too large for memory.

    Without ``image_size`` images keep their own sizes, so batching them needs an augmentation
    that crops to one size first; with it each is resized (shorter side) and center-cropped.
    """

    def __init__(
        self, paths: Sequence[str], labels: Tensor, classes: Sequence[str], image_size: int | None
    ) -> None:
        if labels.shape != (len(paths),):
            raise ValueError(f"need one label per path, got {labels.shape} for {len(paths)}")
        self.paths = list(paths)
        self.labels = labels
        self.classes = list(classes)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = np.ascontiguousarray(_decode(self.paths[index], self.image_size))
        return torch.from_numpy(image), self.labels[index]

    def subset(self, indices: Tensor) -> StreamingImages:
        """The samples at ``indices`` (e.g. from :func:`holdout_split`), same classes."""
        paths = [self.paths[i] for i in indices.tolist()]
        return StreamingImages(paths, self.labels[indices], self.classes, self.image_size)


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[Stats, Stats]:
    """Per-channel mean and (population) standard deviation of uint8 (N, C, H, W) images read
    as values in [0, 1]; exact integer sums, a chunk of images at a time."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros(images.shape[1], dtype=torch.float64)
    for part in images.split(chunk):
        wide = part.to(torch.int64)
        total += wide.sum(dim=(0, 2, 3)).double()
        squares += wide.square().sum(dim=(0, 2, 3)).double()
    count = images.numel() / images.shape[1]
    mean = total / count
    # A constant channel would divide by zero; one grey level is the smallest spread there is.
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1.0)
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


def holdout_split(labels: Tensor, fraction: float = 0.1) -> tuple[Tensor, Tensor]:
    """Split sample indices into (kept, held_out), holding out the last ``fraction`` of each class.

    Deterministic and seed-free, so a validation set carved from a training split is the same
    in every run; both index tensors are in ascending order.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    held = torch.zeros(labels.shape[0], dtype=torch.bool)
    labels = labels.cpu()
    for value in torch.unique(labels):
        members = torch.nonzero(labels == value).flatten()
        count = round(len(members) * fraction)
        held[members[len(members) - count :]] = True
    return torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()


def canonical_name(name: str) -> str:
    """A dataset name as the loaders spell it: fashion_mnist and Fashion-MNIST alike."""
    return name.lower().replace("_", "-")


def default_cache_dir() -> Path:
    """``$CONTRASTKIT_CACHE`` if set, else ``~/.cache/contrastkit``."""
    return Path(os.environ.get("CONTRASTKIT_CACHE") or "~/.cache/contrastkit").expanduser()


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    stream: bool | None = None,
    workers: int | None = None,
) -> InMemoryImages | StreamingImages | ShardImages:
    """Load split ``split`` of dataset ``name`` (one of :data:`DATASET_NAMES`) from ``data_dir``.

    ``data_dir`` is torchvision's ``root`` for fashion-mnist, cifar10/100 and stl10 (the folder
    holding ``FashionMNIST/``, ``cifar-10-batches-py/``, ...) and the tree root (holding
    ``train/``) for image folders; digits needs none. A folder of images without class folders
    (``data_dir/train/*.jpg`` or ``data_dir/*.jpg``) is an unlabelled training split (label -1,
    no classes). In-memory folders carry their measured per-channel ``mean``/``std``. Splits
    are ``train`` and ``test``, plus ``unlabeled`` and ``train+unlabeled`` (pretraining;
    unlabeled samples get label -1) for stl10. digits has no official split, so its test split
    is the last 20% of each class.

    An image-folder ``data_dir`` holding shards (``contrastkit prepare --format``; a local
    folder or an object-store URL) streams them through LitData (:mod:`.streaming`).

    ``download`` fetches a missing torchvision dataset. ``image_size`` resizes folder images
    (shorter side, then center crop); without it they must all share one size. ``stream``
    overrides the preset's choice between decoding a folder into memory and streaming it;
    ``workers`` is the number of decoding processes (default: all CPUs).
    """
    name = canonical_name(name)
    if name == "digits":
        return _memory_only(name, _load_digits(split), image_size, stream)
    if name not in _ARRAY_FORMATS and name not in _PRESETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if data_dir is None:
        raise DatasetNotFoundError(f"{name} needs a data directory; pass --data-dir")
    root = Path(data_dir).expanduser()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if name in _PRESETS and _is_shard_root(data_dir):  # `contrastkit prepare --format` wrote it
        from .streaming import load_shard_split

        return load_shard_split(str(data_dir), split, cache, image_size)
    if name in _ARRAY_FORMATS:
        data = _load_arrays(name, split, root, cache, download)
        return _memory_only(name, data, image_size, stream)
    return _load_folder(name, split, root, cache, image_size, stream, workers)


def _is_shard_root(data_dir: str | Path) -> bool:
    from .shards import is_shard_root

    return is_shard_root(data_dir)


def _one_line(error: BaseException) -> str:
    """An exception's text on one line, for embedding in our one-line messages."""
    return " ".join(str(error).split()) or type(error).__name__


def _check_split(name: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise ValueError(f"{name} has no split {split!r}; choose one of {', '.join(splits)}")


def _memory_only(
    name: str, data: InMemoryImages, image_size: int | None, stream: bool | None
) -> InMemoryImages:
    """Refuse the folder-only options rather than silently ignore them."""
    if stream:
        raise ValueError(f"{name} is always held in memory; streaming is for image folders")
    height, width = data.images.shape[-2:]
    if image_size is not None and (height, width) != (image_size, image_size):
        raise ValueError(f"{name} images are {height}x{width}; only image folders are resized")
    return data


# --- caching -----------------------------------------------------------------------------


def _fingerprint(root: Path, files: Sequence[str | Path], extra: str) -> str:
    """Hash of the source: its path, and every file's relative path, size and mtime."""
    digest = hashlib.sha256(f"{_CACHE_VERSION}|{root.resolve()}|{len(files)}|{extra}".encode())
    prefix = len(str(root))  # files lie under root; slicing is much faster than relative_to
    for path in map(str, files):
        stat = os.stat(path)
        digest.update(f"{path[prefix:]}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _cached(
    cache_dir: Path, key: str, fingerprint: str, build: Callable[[], InMemoryImages]
) -> InMemoryImages:
    """Load ``build()``'s result from the cache, or build it and store it atomically."""
    path = cache_dir / f"{key}-{fingerprint}.pt"
    if path.is_file():
        try:
            return InMemoryImages(**torch.load(path, weights_only=True))
        except Exception as error:  # an unreadable cache is rebuilt, never fatal
            warnings.warn(f"rebuilding unreadable cache {path}: {error}", stacklevel=4)
    data = build()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=cache_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                fields = {"images": data.images, "labels": data.labels, "classes": data.classes}
                if data.mean is not None:
                    fields |= {"mean": data.mean, "std": data.std}
                torch.save(fields, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as error:
        warnings.warn(f"cannot write dataset cache {path}: {error}", stacklevel=4)
    return data


# --- array formats (torchvision layouts) -------------------------------------------------


class _CorruptFileError(ValueError):
    """A dataset file exists but cannot be parsed; load_dataset adds the dataset's name."""


@dataclass(frozen=True)
class _ArrayFormat:
    """A dataset stored as arrays in torchvision's layout under ``data_dir/folder``."""

    folder: str
    files: dict[str, tuple[str, ...]]  # the files each split needs, in the order read takes them
    read: Callable[[list[Path]], InMemoryImages]
    torchvision_class: str
    # Every archive holds all splits, so download through the smallest one torchvision loads.
    download_kwargs: dict[str, object]
    source: str  # how to obtain it, for error messages


def _load_arrays(name: str, split: str, root: Path, cache: Path, download: bool) -> InMemoryImages:
    fmt = _ARRAY_FORMATS[name]
    _check_split(name, split, tuple(fmt.files))
    folder = root / fmt.folder
    if download and _first_missing(folder, fmt.files[split]) is not None:
        _download(name, fmt, root)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{name} not found at {folder}; {fmt.source}")
    missing = _first_missing(folder, fmt.files[split])
    if missing is not None:
        raise DatasetNotFoundError(
            f"{name} incomplete at {folder}: missing {missing}; {fmt.source}"
        )
    files = [folder / f for f in fmt.files[split]]
    fingerprint = _fingerprint(folder, files, "")
    try:
        return _cached(cache, f"{name}-{split}", fingerprint, lambda: fmt.read(files))
    except _CorruptFileError as error:
        raise DatasetNotFoundError(
            f"{name} incomplete at {folder}: {error}; {fmt.source}"
        ) from None


def _first_missing(folder: Path, names: Iterable[str]) -> str | None:
    return next((n for n in names if not (folder / n).is_file()), None)


def _download(name: str, fmt: _ArrayFormat, root: Path) -> None:
    from torchvision import datasets

    try:
        getattr(datasets, fmt.torchvision_class)(
            root=str(root), download=True, **fmt.download_kwargs
        )
    except Exception as error:  # network, disk and checksum failures alike
        raise DatasetNotFoundError(
            f"downloading {name} to {root} failed ({_one_line(error)}); {fmt.source}"
        ) from None


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format): magic, big-endian dimensions, uint8 data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise _CorruptFileError(f"{path.name} cannot be read ({_one_line(error)})") from None
    ndim = raw[3] if len(raw) >= 4 and raw[:3] == b"\0\0\x08" else 0
    header = 4 + 4 * ndim
    shape = [int.from_bytes(raw[i : i + 4], "big") for i in range(4, header, 4)]
    if ndim == 0 or len(raw) != header + prod(shape):
        raise _CorruptFileError(f"{path.name} is not a complete uint8 IDX file")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


def _read_fashion(paths: list[Path]) -> InMemoryImages:
    images, labels = (_read_idx(p) for p in paths)
    return _arrays(paths[0], images[:, None], labels, _FASHION_CLASSES)


def _unpickle(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as error:  # pickle raises many types on damaged input
        raise _CorruptFileError(f"{path.name} cannot be unpickled ({_one_line(error)})") from None


def _read_cifar(paths: list[Path], label_key: str, names_key: str) -> InMemoryImages:
    """Read torchvision's CIFAR python pickles: batches of rows of 3x32x32 bytes, then meta."""
    *batches, meta = paths
    images, labels = [], []
    for path in batches:
        entry = _unpickle(path)
        try:
            data = np.asarray(entry["data"], dtype=np.uint8)
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry[label_key], dtype=np.int64))
        except (KeyError, ValueError) as error:
            raise _CorruptFileError(f"{path.name} has no valid {error} entry") from None
    classes = _unpickle(meta).get(names_key)
    if not isinstance(classes, list):
        raise _CorruptFileError(f"{meta.name} has no {names_key} list")
    return _arrays(batches[0], np.concatenate(images), np.concatenate(labels), classes)


def _read_stl10_images(path: Path) -> np.ndarray:
    """STL-10 stores each image channel by channel, each channel column-major."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size % (3 * _STL10_SIDE * _STL10_SIDE):
        raise _CorruptFileError(f"{path.name} is truncated")
    return data.reshape(-1, 3, _STL10_SIDE, _STL10_SIDE).transpose(0, 1, 3, 2)


def _read_stl10(paths: list[Path]) -> InMemoryImages:
    """Read ``*_X.bin`` files with their ``*_y.bin`` labels (1-based) if listed, else label -1."""
    images, labels = [], []
    for path in paths:
        if path.name.endswith("_X.bin"):
            images.append(_read_stl10_images(path))
            label_file = path.with_name(path.name.replace("_X.bin", "_y.bin"))
            if label_file in paths:
                labels.append(np.fromfile(label_file, dtype=np.uint8).astype(np.int64) - 1)
            else:
                labels.append(np.full(len(images[-1]), -1, dtype=np.int64))
    classes = [line.strip() for line in paths[-1].read_text().splitlines() if line.strip()]
    return _arrays(paths[0], np.concatenate(images), np.concatenate(labels), classes)


def _arrays(
    path: Path, images: np.ndarray, labels: np.ndarray, classes: Sequence[str]
) -> InMemoryImages:
    if len(images) != len(labels):
        raise _CorruptFileError(f"{len(images)} images in {path.name} but {len(labels)} labels")
    return InMemoryImages(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels.astype(np.int64)),
        classes,
    )


def _load_digits(split: str) -> InMemoryImages:
    """scikit-learn's bundled 8x8 digits, grey levels 0..16 scaled to 0..255 (rounded)."""
    from sklearn.datasets import load_digits

    _check_split("digits", split, ("train", "test"))
    bunch = load_digits()
    levels = torch.from_numpy(bunch.images.astype(np.int64))
    images = ((levels * 255 + 8) // 16).to(torch.uint8)[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = holdout_split(labels, _DIGITS_TEST_FRACTION)
    keep = train if split == "train" else test
    return InMemoryImages(images[keep], labels[keep], [str(d) for d in range(10)])


_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_STL10_FILES = {
    "train": ("train_X.bin", "train_y.bin"),
    "test": ("test_X.bin", "test_y.bin"),
    "unlabeled": ("unlabeled_X.bin",),
    "train+unlabeled": ("train_X.bin", "train_y.bin", "unlabeled_X.bin"),
}

_ARRAY_FORMATS: dict[str, _ArrayFormat] = {
    "fashion-mnist": _ArrayFormat(
        folder="FashionMNIST/raw",
        files={
            split: (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
            for split, prefix in (("train", "train"), ("test", "t10k"))
        },
        read=_read_fashion,
        torchvision_class="FashionMNIST",
        download_kwargs={"train": False},
        source="pass --download or place the torchvision Fashion-MNIST raw *-ubyte.gz files there",
    ),
    "cifar10": _ArrayFormat(
        folder="cifar-10-batches-py",
        files={
            "train": (*(f"data_batch_{i}" for i in range(1, 6)), "batches.meta"),
            "test": ("test_batch", "batches.meta"),
        },
        read=functools.partial(_read_cifar, label_key="labels", names_key="label_names"),
        torchvision_class="CIFAR10",
        download_kwargs={"train": False},
        source="pass --download or place the torchvision CIFAR-10 files there",
    ),
    "cifar100": _ArrayFormat(
        folder="cifar-100-python",
        files={"train": ("train", "meta"), "test": ("test", "meta")},
        read=functools.partial(_read_cifar, label_key="fine_labels", names_key="fine_label_names"),
        torchvision_class="CIFAR100",
        download_kwargs={"train": False},
        source="pass --download or place the torchvision CIFAR-100 files there",
    ),
    "stl10": _ArrayFormat(
        folder="stl10_binary",
        files={split: (*files, "class_names.txt") for split, files in _STL10_FILES.items()},
        read=_read_stl10,
        torchvision_class="STL10",
        download_kwargs={"split": "test"},
        source="pass --download or place the extracted STL-10 binary files there",
    ),
}


# --- image folders -----------------------------------------------------------------------


@dataclass(frozen=True)
class _FolderPreset:
    """Where a named image-folder dataset keeps its test split, and how it is held."""

    test_dirs: tuple[str, ...]  # tried in order for the test split
    stream: bool  # too large to decode into memory by default
    source: str  # what data_dir must hold, for error messages
    classes: tuple[str, ...] | None = None  # keep only these class folders


@dataclass(frozen=True)
class _Listing:
    """One split's image files with their labels, in a deterministic order."""

    paths: list[str]  # str, not Path: building 50k Path objects takes longer than listing
    labels: list[int]
    classes: list[str]
    index_files: list[Path]  # label lists the split is read from; part of its fingerprint


_IMAGENET_SOURCE = "point --data-dir at an ImageNet-1k tree with train/<wnid>/ and val/<wnid>/"

_PRESETS: dict[str, _FolderPreset] = {
    "imagefolder": _FolderPreset(
        ("test", "val"),
        stream=False,
        source="point --data-dir at a folder with train/<class>/ and test/<class>/ or val/<class>/",
    ),
    "imagenet": _FolderPreset(("val",), stream=True, source=_IMAGENET_SOURCE),
    "imagenet100": _FolderPreset(
        ("val",), stream=True, source=_IMAGENET_SOURCE, classes=IMAGENET100_CLASSES
    ),
    "tiny-imagenet": _FolderPreset(
        ("val",), stream=False, source="point --data-dir at the extracted tiny-imagenet-200 folder"
    ),
    "food101": _FolderPreset(
        ("test",), stream=True, source="point --data-dir at the extracted food-101 folder"
    ),
}

DATASET_NAMES: tuple[str, ...] = ("digits", *_ARRAY_FORMATS, *_PRESETS)
FOLDER_DATASET_NAMES: tuple[str, ...] = tuple(_PRESETS)  # the ones image_size resizes


def _load_folder(
    name: str,
    split: str,
    root: Path,
    cache: Path,
    image_size: int | None,
    stream: bool | None,
    workers: int | None,
) -> InMemoryImages | StreamingImages:
    preset = _PRESETS[name]
    _check_split(name, split, ("train", "test"))
    listing = _list_folder(name, root, split, preset)
    labels = torch.tensor(listing.labels, dtype=torch.int64)
    if preset.stream if stream is None else stream:
        return StreamingImages(listing.paths, labels, listing.classes, image_size)
    n_workers = workers if workers is not None else os.cpu_count() or 1
    fingerprint = _fingerprint(root, [*listing.paths, *listing.index_files], f"{image_size}")

    def decode() -> InMemoryImages:
        images = _decode_files(listing.paths, image_size, n_workers)
        return InMemoryImages(images, labels, listing.classes, *channel_stats(images))

    data = _cached(cache, f"{name}-{split}", fingerprint, decode)
    if data.mean is None:  # a cache written before statistics were kept
        data.mean, data.std = channel_stats(data.images)
    return data


def _list_folder(name: str, root: Path, split: str, preset: _FolderPreset) -> _Listing:
    """List one split as a class-folder tree, tiny-imagenet's val/ or food-101's meta lists."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"{name} not found at {root}; {preset.source}")
    split_list = root / "meta" / f"{split}.txt"
    flat = _flat_folder(root, split, preset)
    if split_list.is_file() and (root / "images").is_dir():
        listing = _list_food101(name, root, split_list, preset)
    elif flat is not None:
        files = _images_under(flat)
        listing = _Listing(files, [-1] * len(files), [], [])
    else:
        split_dir = _split_dir(name, root, split, preset)
        train_dir = root / "train"
        classes = _class_names(name, train_dir if train_dir.is_dir() else split_dir, preset)
        annotations = split_dir / "val_annotations.txt"
        if annotations.is_file():
            lines = annotations.read_text().splitlines()
            entries = [line.split("\t")[:2] for line in lines if line.strip()]
            pairs = [(os.path.join(split_dir, "images", f), cls) for f, cls in entries]
            listing = _from_pairs(name, pairs, classes, annotations, preset)
        else:
            listing = _from_class_folders(name, split_dir, classes, preset)
    if not listing.paths:
        raise DatasetNotFoundError(f"{name} has no {split} images under {root}; {preset.source}")
    return listing


def _flat_folder(root: Path, split: str, preset: _FolderPreset) -> Path | None:
    """The folder of an unlabelled training split (images, no class folders): ``train/``, or
    ``data_dir`` itself when it has no ``train/``; None for a class-folder tree."""
    if split != "train" or preset.classes is not None:
        return None
    folder = root / "train" if (root / "train").is_dir() else root
    if _subdirs(folder) or not any(
        os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in os.scandir(folder)
    ):
        return None
    return folder


def check_split(name: str, split: str, data_dir: str | Path | None) -> None:
    """Raise DatasetNotFoundError (or DataError) if `split` of an image-folder dataset is
    missing or names a class train/ lacks; it lists files only, so callers can fail fast."""
    name = canonical_name(name)
    if name in _PRESETS and data_dir is not None and _is_shard_root(data_dir):
        from .shards import split_folder

        split_folder(data_dir, split)
    elif name in _PRESETS and data_dir is not None:
        _check_split(name, split, ("train", "test"))
        _list_folder(name, Path(data_dir).expanduser(), split, _PRESETS[name])


def _split_dir(name: str, root: Path, split: str, preset: _FolderPreset) -> Path:
    candidates = [root / d for d in (("train",) if split == "train" else preset.test_dirs)]
    found = next((d for d in candidates if d.is_dir()), None)
    if found is None:
        where = " or ".join(str(d) for d in candidates)
        raise DatasetNotFoundError(f"{name} {split} split not found at {where}; {preset.source}")
    return found


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _class_names(name: str, folder: Path, preset: _FolderPreset) -> list[str]:
    """Sorted class folder names, or the preset's classes after checking they are all there."""
    found = _subdirs(folder)
    if preset.classes is None:
        return found
    missing = sorted(set(preset.classes) - set(found))
    if missing:
        raise DatasetNotFoundError(
            f"{name} incomplete at {folder}: {len(missing)} of its {len(preset.classes)} class "
            f"folders are missing, e.g. {missing[0]}; {preset.source}"
        )
    return sorted(preset.classes)


def _from_class_folders(
    name: str, split_dir: Path, classes: list[str], preset: _FolderPreset
) -> _Listing:
    if preset.classes is None:
        extra = sorted(set(_subdirs(split_dir)) - set(classes))
        if extra:
            train_dir = split_dir.parent / "train"
            raise DataError(f"{name}: class {split_dir / extra[0]} is missing from {train_dir}")
    paths: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        if not (split_dir / cls).is_dir():
            raise DatasetNotFoundError(
                f"{name} incomplete at {split_dir}: no folder {cls}/; {preset.source}"
            )
        files = _images_under(split_dir / cls)
        paths += files
        labels += [label] * len(files)
    return _Listing(paths, labels, classes, [])


def _images_under(folder: Path) -> list[str]:
    """Image files anywhere below ``folder`` (tiny-imagenet nests them in images/), sorted."""
    found = []
    for parent, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            os.path.join(parent, f)
            for f in files
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found)


def _list_food101(name: str, root: Path, split_list: Path, preset: _FolderPreset) -> _Listing:
    """food-101 lists each split in meta/<split>.txt as ``class/id`` lines for images/."""
    classes_file = root / "meta" / "classes.txt"
    if not classes_file.is_file():
        raise DatasetNotFoundError(f"{name} incomplete: missing {classes_file}; {preset.source}")
    classes = classes_file.read_text().split()
    pairs = [
        (os.path.join(root, "images", f"{entry}.jpg"), entry.split("/")[0])
        for entry in split_list.read_text().split()
    ]
    listing = _from_pairs(name, pairs, classes, split_list, preset)
    return _Listing(listing.paths, listing.labels, classes, [split_list, classes_file])


def _from_pairs(
    name: str,
    pairs: list[tuple[str, str]],
    classes: list[str],
    index_file: Path,
    preset: _FolderPreset,
) -> _Listing:
    """Labels for (file, class name) pairs read from a label list, checking both exist."""
    label_of = {cls: i for i, cls in enumerate(classes)}
    for path, cls in pairs:
        if cls not in label_of:
            raise DatasetNotFoundError(f"{name}: {index_file} names unknown class {cls!r}")
        if not os.path.isfile(path):
            raise DatasetNotFoundError(f"{name} incomplete: missing {path}; {preset.source}")
    paths = [path for path, _ in pairs]
    return _Listing(paths, [label_of[cls] for _, cls in pairs], classes, [index_file])


# --- decoding ----------------------------------------------------------------------------


def _decode(path: str, image_size: int | None) -> np.ndarray:
    """Decode one image file to uint8 (3, H, W), resized and center-cropped if a size is given."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image_size is not None:
                image.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptImageError(f"cannot decode image {path}: {_one_line(error)}") from None
    if image_size is not None:
        rgb = _resize_center_crop(rgb, image_size)
    return np.asarray(rgb).transpose(2, 0, 1)


def _resize_center_crop(image: PILImage, size: int) -> PILImage:
    """Resize the shorter side to ``size`` and crop the center square, as torchvision does."""
    from PIL import Image

    width, height = image.size
    if min(width, height) != size:
        if width <= height:
            width, height = size, int(size * height / width)
        else:
            width, height = int(size * width / height), size
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = round((width - size) / 2), round((height - size) / 2)
    return image.crop((left, top, left + size, top + size))


def _decode_chunk(paths: Sequence[str], image_size: int | None) -> np.ndarray:
    arrays = [_decode(p, image_size) for p in paths]
    for path, array in zip(paths[1:], arrays[1:], strict=True):
        if array.shape != arrays[0].shape:
            raise _size_error(paths[0], arrays[0].shape, path, array.shape)
    return np.stack(arrays)


def _size_error(
    first: str, first_shape: tuple[int, ...], other: str, shape: tuple[int, ...]
) -> DataError:
    return DataError(
        f"images differ in size ({first} is {first_shape[2]}x{first_shape[1]}, {other} is "
        f"{shape[2]}x{shape[1]}); pass an image size (--image-size) to resize them"
    )


def _decode_files(paths: Sequence[str], image_size: int | None, workers: int) -> Tensor:
    """Decode images into one uint8 (N, 3, H, W) tensor, chunks in parallel processes.

    Processes, not threads: for small JPEGs the per-file Python work holds the GIL, and
    threads measured slower than a single process.
    """
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        return _gather(paths, chunks, (_decode_chunk(c, image_size) for c in chunks))
    pool = ProcessPoolExecutor(min(workers, len(chunks)))
    try:
        return _gather(paths, chunks, pool.map(_decode_chunk, chunks, itertools.repeat(image_size)))
    finally:
        pool.shutdown(cancel_futures=True)


def _gather(
    paths: Sequence[str], chunks: Sequence[Sequence[str]], arrays: Iterable[np.ndarray]
) -> Tensor:
    """Copy decoded chunks into one preallocated array, checking they share one size."""
    remaining = iter(arrays)
    first = next(remaining)
    out = np.empty((len(paths), *first.shape[1:]), dtype=np.uint8)
    start = 0
    for chunk, array in zip(chunks, itertools.chain([first], remaining), strict=True):
        if array.shape[1:] != out.shape[1:]:
            raise _size_error(paths[0], out.shape[1:], chunk[0], array.shape[1:])
        out[start : start + len(array)] = array
        start += len(array)
    return torch.from_numpy(out)
