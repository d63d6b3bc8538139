"""Shards of an image folder, for training on many machines: written by
`contrastkit prepare DIR --format litdata|webdataset --out SHARDS` and recognised when
`--data-dir` points at them.

Each sample keeps its image file's encoded bytes as they are (no decoding, no re-encoding),
its label and its position in the folder's listing; the class names travel with the shards.
Layout: ``SHARDS/train/`` and, when the folder has one, ``SHARDS/val/`` (or ``test/``), each
one split. A split in LitData's format is its chunk files and ``index.json`` (which also holds
our ``contrastkit`` entry: class names and sample count); in WebDataset's format it is
``shard-NNNNNN.tar`` files and ``contrastkit.json``. LitData reads its format in place, or from
an object-store URL; it cannot read WebDataset tars, so a WebDataset split is converted once
into LitData chunks under the cache folder (with the webdataset library reading the tars).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ContrastkitError
from .datasets import _PRESETS, DatasetNotFoundError, _list_folder, _one_line

SHARD_FORMATS = ("litdata", "webdataset")
METADATA_KEY = "contrastkit"  # our entry in LitData's index.json
WEBDATASET_METADATA = "contrastkit.json"
_TAR_PATTERN = "shard-%06d.tar"
_TEST_DIRS = ("test", "val")  # the probe's split, in the order image folders try them
_CONVERTED_VERSION = 1  # bump when the conversion of WebDataset shards changes


class ShardError(ContrastkitError, ValueError):
    """Shards that cannot be written or read as asked; the message is one line."""


@dataclass(frozen=True)
class ShardSplit:
    """One split's LitData shards: where they are (a folder or a URL), and what they hold."""

    source: str
    classes: list[str]
    count: int


def is_url(location: str | os.PathLike) -> bool:
    """Whether `location` is an object-store URL (s3://, gs://, ...), passed on to LitData."""
    return "://" in str(location)


def shard_format(folder: str | os.PathLike) -> str | None:
    """`litdata` or `webdataset` when `folder` holds one split's shards (a URL: LitData's),
    else None."""
    if is_url(folder):
        return "litdata"
    path = Path(folder).expanduser()
    if (path / "index.json").is_file():
        return "litdata"
    if path.is_dir() and any(e.name.endswith(".tar") for e in os.scandir(path)):
        return "webdataset"
    return None


def is_shard_root(data_dir: str | os.PathLike) -> bool:
    """Whether `data_dir` holds shards: itself one split (the training split), or a
    ``train/`` split beside an optional ``val/`` or ``test/``."""
    return shard_format(data_dir) is not None or (
        not is_url(data_dir) and shard_format(Path(data_dir).expanduser() / "train") is not None
    )


def split_folder(data_dir: str | os.PathLike, split: str) -> str:
    """Where `split` (train or test) of the shards at `data_dir` lies, or DatasetNotFoundError."""
    root = str(data_dir) if is_url(data_dir) else str(Path(data_dir).expanduser())
    if split not in ("train", "test"):
        raise ValueError(f"shards have no split {split!r}; choose one of train, test")
    if shard_format(root) is not None:  # a single split: the training one
        if split == "train":
            return root
        raise DatasetNotFoundError(f"{root} holds one split of shards (train), no test split")
    candidates = [os.path.join(root, d) for d in (("train",) if split == "train" else _TEST_DIRS)]
    found = next((c for c in candidates if shard_format(c) is not None), None)
    if found is None:
        where = " or ".join(candidates)
        raise DatasetNotFoundError(
            f"no {split} shards at {where}; write them with contrastkit prepare --format"
        )
    return found


def read_split(folder: str, cache_dir: Path) -> ShardSplit:
    """The LitData shards of the split at `folder` with their class names and count; a
    WebDataset split is converted under `cache_dir` first (once: the result is reused)."""
    if shard_format(folder) == "webdataset":
        folder = str(_converted(Path(folder), cache_dir))
    if is_url(folder):
        return _remote_split(folder, cache_dir)
    index = _read_json(Path(folder) / "index.json")
    return _split_from_index(folder, index)


def _split_from_index(source: str, index: dict) -> ShardSplit:
    entry = index.get(METADATA_KEY)
    if not isinstance(entry, dict) or "classes" not in entry or "count" not in entry:
        raise ShardError(
            f"{source}: index.json has no {METADATA_KEY!r} entry (class names, count); "
            "write the shards with contrastkit prepare --format litdata"
        )
    return ShardSplit(source, list(entry["classes"]), int(entry["count"]))


def _remote_split(url: str, cache_dir: Path) -> ShardSplit:
    """An object-store split: LitData fetches its index.json into its cache folder."""
    from litdata import StreamingDataset

    try:
        dataset = StreamingDataset(url, cache_dir=str(cache_dir / "litdata"))
    except Exception as error:  # network, credentials and missing files alike
        raise DatasetNotFoundError(f"cannot open shards at {url}: {_one_line(error)}") from None
    return _split_from_index(url, _read_json(Path(dataset.input_dir.path) / "index.json"))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ShardError(f"cannot read {path}: {_one_line(error)}") from None


# --- writing -------------------------------------------------------------------------------


@dataclass
class ShardReport:
    """What `write_shards` wrote: images and shard files per split."""

    images: dict[str, int]
    files: dict[str, int]


def write_shards(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str,
    shard_mb: float = 64.0,
    progress: Callable[[int, str], object] | None = None,
) -> ShardReport:
    """Write the image folder `folder` (``train/<class>/`` and optional ``val/`` or ``test/``,
    as ``--dataset imagefolder`` reads it) as shards of about `shard_mb` MB under `out`.

    Atomic: everything is written into a hidden folder beside `out`, renamed into place at
    the end, so `out` is either absent or complete. `progress(total, split)` returns a tqdm-like
    bar (update, context manager) for each split.
    """
    if fmt not in SHARD_FORMATS:
        raise ShardError(f"--format {fmt}: choose one of {', '.join(SHARD_FORMATS)}")
    if not shard_mb > 0:
        raise ShardError(f"--shard-mb {shard_mb}: must be > 0")
    source, target = Path(folder).expanduser().resolve(), Path(out).expanduser().resolve()
    if target == source or source in target.parents:
        raise ShardError(f"--out {out}: must not be {folder} or inside it")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ShardError(f"--out {out}: already exists and is not empty; choose a new folder")
    if not source.is_dir():
        raise ShardError(f"prepare: {folder} is not a folder")
    splits = _listings(source)
    temporary = target.parent / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    report = ShardReport({}, {})
    try:
        for split, listing in splits.items():
            write = _write_litdata if fmt == "litdata" else _write_webdataset
            items = _items(listing.paths, listing.labels)
            bar = progress(len(listing.paths), split) if progress else None
            write(items, temporary / split, listing.classes, len(listing.paths), shard_mb, bar)
            report.images[split] = len(listing.paths)
            report.files[split] = sum(1 for _ in (temporary / split).iterdir())
        _fsync_tree(temporary)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return report


def _listings(source: Path) -> dict:
    """Each split of the folder to write: train, and test or val when there is one."""
    preset = _PRESETS["imagefolder"]
    try:
        splits = {"train": _list_folder("prepare", source, "train", preset)}
        for name in _TEST_DIRS:
            if (source / name).is_dir():
                splits[name] = _list_folder("prepare", source, "test", preset)
                break
    except DatasetNotFoundError as error:
        reason = _one_line(error).split(";")[0]
        raise ShardError(
            f"{reason}; shards are written from a folder with train/<class>/ (and val/ or test/), "
            "or a folder of unlabelled images"
        ) from None
    return splits


def _items(paths: list[str], labels: list[int]) -> Iterator[tuple[int, int, bytes, str]]:
    """(index, label, encoded bytes, extension) of each file, read as it is."""
    for index, (path, label) in enumerate(zip(paths, labels, strict=True)):
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise ShardError(f"cannot read {path}: {_one_line(error)}") from None
        yield index, label, data, os.path.splitext(path)[1].lower().lstrip(".")


def _write_litdata(items, folder: Path, classes, count: int, shard_mb: float, bar) -> None:
    from litdata.streaming.writer import BinaryWriter

    writer = BinaryWriter(str(folder), chunk_bytes=int(shard_mb * 2**20))
    with bar if bar is not None else contextlib.nullcontext():
        for index, label, data, _ in items:
            writer.add_item(index, {"index": index, "label": label, "image": data})
            if bar is not None:
                bar.update(1)
    writer.done()
    writer.merge()
    index_file = folder / "index.json"
    index = json.loads(index_file.read_text())
    index[METADATA_KEY] = {"classes": list(classes), "count": count}
    index_file.write_text(json.dumps(index))


def _write_webdataset(items, folder: Path, classes, count: int, shard_mb: float, bar) -> None:
    import webdataset

    folder.mkdir(parents=True)
    pattern = str(folder / _TAR_PATTERN)
    limit = int(shard_mb * 2**20)
    with (
        webdataset.ShardWriter(pattern, maxsize=limit, verbose=0) as writer,
        bar if bar is not None else contextlib.nullcontext(),
    ):
        for index, label, data, extension in items:
            writer.write({"__key__": f"{index:09d}", extension: data, "cls": label})
            if bar is not None:
                bar.update(1)
    metadata = {"classes": list(classes), "count": count, "format": "webdataset"}
    (folder / WEBDATASET_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")


def _fsync_tree(folder: Path) -> None:
    """Flush every file under `folder` to disk before the rename that publishes it."""
    for parent, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(parent, name), "rb") as handle:
                os.fsync(handle.fileno())


# --- WebDataset to LitData -----------------------------------------------------------------


def _converted(folder: Path, cache_dir: Path) -> Path:
    """LitData chunks of the WebDataset split at `folder`, under `cache_dir` (keyed by the
    tars' names, sizes and times, so a changed split is converted again)."""
    tars = sorted(p for p in folder.iterdir() if p.suffix == ".tar")
    digest = hashlib.sha256(f"{_CONVERTED_VERSION}|{folder.resolve()}".encode())
    for tar in tars:
        stat = tar.stat()
        digest.update(f"{tar.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    target = cache_dir / "shards" / f"{folder.name}-{digest.hexdigest()[:16]}"
    if (target / "index.json").is_file():
        return target
    metadata = _read_json(folder / WEBDATASET_METADATA)
    if "classes" not in metadata or "count" not in metadata:
        raise ShardError(f"{folder / WEBDATASET_METADATA}: needs classes and count")
    temporary = target.parent / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        items = _tar_items(tars)
        _write_litdata(items, temporary, metadata["classes"], metadata["count"], 64.0, None)
        _fsync_tree(temporary)
        try:
            os.replace(temporary, target)
        except OSError:  # another process converted it first: keep its copy
            if not (target / "index.json").is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def _tar_items(tars: list[Path]) -> Iterator[tuple[int, int, bytes, str]]:
    """(index, label, encoded bytes, extension) of each sample of WebDataset tars, in order."""
    import webdataset

    from .datasets import IMAGE_EXTENSIONS

    urls = [str(t) for t in tars]
    for sample in webdataset.WebDataset(urls, shardshuffle=False, empty_check=False):
        images = [k for k in sample if f".{k}" in IMAGE_EXTENSIONS]
        if len(images) != 1 or "cls" not in sample:
            raise ShardError(
                f"{sample.get('__url__')}: sample {sample.get('__key__')} needs one image and a "
                f"cls entry, has {', '.join(k for k in sample if not k.startswith('__'))}"
            )
        label = int(bytes(sample["cls"]).decode())
        yield int(sample["__key__"]), label, bytes(sample[images[0]]), images[0]
