"""`contrastkit prepare`: check an image folder for unreadable files, or write a resized copy.

Both walk every image file under a folder once, in parallel processes (decoding holds the GIL),
and keep the folder's layout. The copy is resumable: each output file is written atomically, so
a file that exists is complete and a rerun skips it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ContrastkitError
from ..fileio import atomic_write_bytes
from .datasets import DatasetNotFoundError, _images_under

_CHUNK = 64  # files per worker task: small enough for a smooth progress bar
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})


class PrepareError(ContrastkitError, ValueError):
    """An argument of `prepare` that cannot be used; the message is one line."""


@dataclass
class PrepareReport:
    """What one pass over a folder found and did."""

    total: int = 0
    written: int = 0  # resized copy: files written in this pass
    skipped: int = 0  # resized copy: outputs already there from an earlier pass
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def read_error(path: str) -> str | None:
    """Why `path` cannot be decoded as an image (a one-line reason), or None when it can.

    The whole image is decoded, so a truncated JPEG is caught, not only a broken header.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        return " ".join(str(error).split()) or type(error).__name__
    return None


def _check_chunk(paths: Sequence[str]) -> list[tuple[str, str | None]]:
    return [(path, read_error(path)) for path in paths]


def _output_path(source: Path, out: Path, path: str) -> Path:
    """Where the copy of `path` goes: the same relative path, with a JPEG suffix."""
    relative = Path(path).relative_to(source)
    if relative.suffix.lower() not in _JPEG_SUFFIXES:
        relative = relative.with_suffix(".jpg")
    return out / relative


def resized_jpeg(path: str, max_side: int, quality: int) -> bytes:
    """`path` as RGB JPEG bytes whose longer side is at most `max_side` (aspect kept).

    An RGB JPEG that is already small enough is returned byte for byte (no second encoding).
    """
    from PIL import Image

    with Image.open(path) as image:
        if image.format == "JPEG" and image.mode == "RGB" and max(image.size) <= max_side:
            return Path(path).read_bytes()
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale first
        rgb = image.convert("RGB")
    rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _resize_chunk(
    items: Sequence[tuple[str, str]], max_side: int, quality: int
) -> list[tuple[str, str | None]]:
    results: list[tuple[str, str | None]] = []
    for path, target in items:
        reason = read_error(path)
        if reason is None:
            atomic_write_bytes(target, resized_jpeg(path, max_side, quality))
        results.append((path, reason))
    return results


def _run_chunks(
    work: Callable[..., list[tuple[str, str | None]]],
    chunks: Sequence[Sequence],
    extra: tuple,
    workers: int,
) -> Iterator[list[tuple[str, str | None]]]:
    """`work(chunk, *extra)` for every chunk, in worker processes when there are several."""
    if workers <= 1 or len(chunks) <= 1:
        yield from (work(chunk, *extra) for chunk in chunks)
        return
    with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
        futures = [pool.submit(work, chunk, *extra) for chunk in chunks]
        for future in futures:
            yield future.result()


def _list_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DatasetNotFoundError(f"prepare: {folder} is not a folder")
    paths = _images_under(folder)
    if not paths:
        raise DatasetNotFoundError(f"prepare: no image files under {folder}")
    return paths


def _progress(total: int, description: str):
    """A progress bar on a terminal; nothing when the output is a file or a pipe."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", disable=None, leave=False)


def check_folder(folder: str | os.PathLike, workers: int | None = None) -> PrepareReport:
    """Decode every image file under `folder` once and list those that cannot be read."""
    paths = _list_images(Path(folder))
    report = PrepareReport(total=len(paths))
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with _progress(len(paths), "check") as bar:
        for results in _run_chunks(_check_chunk, chunks, (), workers or os.cpu_count() or 1):
            report.unreadable += [(path, reason) for path, reason in results if reason]
            bar.update(len(results))
    return report


def resize_folder(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    max_side: int,
    quality: int = 90,
    workers: int | None = None,
) -> PrepareReport:
    """Write a copy of `folder` under `out` (same layout, JPEG) with the longer side of each
    image at most `max_side`. Outputs already present are kept, so an interrupted run resumes;
    unreadable files are skipped and listed."""
    if max_side < 1:
        raise PrepareError(f"--max-side {max_side}: must be >= 1")
    if not 1 <= quality <= 95:
        raise PrepareError(f"--quality {quality}: must be in [1, 95]")
    source, target = Path(folder).resolve(), Path(out).resolve()
    if target == source or source in target.parents:
        raise PrepareError(f"--out {out}: must not be {folder} or inside it")
    paths = _list_images(source)
    report = PrepareReport(total=len(paths))
    pending = []
    for path in paths:
        destination = _output_path(source, target, path)
        if destination.exists():
            report.skipped += 1
        else:
            pending.append((path, str(destination)))
    chunks = [pending[i : i + _CHUNK] for i in range(0, len(pending), _CHUNK)]
    extra = (max_side, quality)
    with _progress(len(pending), "resize") as bar:
        for results in _run_chunks(_resize_chunk, chunks, extra, workers or os.cpu_count() or 1):
            for path, reason in results:
                if reason:
                    report.unreadable.append((path, reason))
                else:
                    report.written += 1
            bar.update(len(results))
    return report
