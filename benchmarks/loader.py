"""Images/s of the ways a streamed image folder reaches training, at 224 px with two views.

Candidates, one row each per worker count (``CANDIDATES``: add one entry for another path, as a
function from a ``Setup`` to an iterable of device batches):

* ``pil-workers``: workers decode each JPEG with PIL, resize its shorter side to 224 and
  centre-crop it (``decode=pil``, the old path); crops then come from the centre square;
* ``bytes+batched-decode``: workers read raw bytes; the batch is decoded on the training device
  with torchvision's batched ``decode_jpeg`` (``decode=bytes``), whole, padded, each image capped
  at ``max_side``; crops come from the whole image;
* ``shards+pil-workers`` and ``shards+batched-decode``: the same two decodes of the same images
  read from LitData shards (``contrastkit prepare --format litdata``) through LitData's
  StreamingDataLoader, as ``--data-dir SHARDS`` trains. The shards are written once, untimed,
  beside the folder. (WebDataset shards are converted to LitData chunks once when first read,
  then read by this same path, so they need no row of their own.)

Each batch then gets the training augmentation (two SimCLR views at 224 of the ImageNet recipe),
as ``contrastkit pretrain`` runs it. The table gives images/s of passes over the folder that
only load (and decode) the batches, and of passes that also make the two views: medians over
repeats in which the candidates alternate. The folder is ImageNet-like: CIFAR-10 training JPEGs
from ``../shared/data`` upscaled to 400×300, written once under ``benchmarks/.data/`` (git-ignored).

Usage: ``OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src:. .venv/bin/python -m benchmarks.loader``
(``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from contrastkit.data.bad_files import BadFiles
from contrastkit.data.datasets import StreamingImages
from contrastkit.data.presets import DataRecipe
from contrastkit.data.shards import write_shards
from contrastkit.data.streaming import ShardImages, load_shard_split
from contrastkit.fileio import atomic_write_bytes
from contrastkit.train.data import EpochBatches

ROOT = Path(__file__).resolve().parent
SHARED_CIFAR = ROOT.parent.parent / "shared" / "data" / "cifar10" / "train"
FOLDER = ROOT / ".data" / "imagenet_like"
SIZE = 224
WIDTH, HEIGHT = 400, 300


@dataclass(frozen=True)
class Setup:
    """What every candidate loads, and how."""

    images: StreamingImages  # the folder's files, resized to SIZE where a path decodes in workers
    shards: ShardImages  # the same files as LitData shards
    batch_size: int
    workers: int
    device: torch.device


def _epoch_batches(setup: Setup, decode: str, shards: bool = False) -> EpochBatches:
    epochs = iter(range(1_000_000))  # a new shuffle each pass, as epochs of a run
    images = setup.shards if shards else setup.images
    return EpochBatches(
        images,
        setup.batch_size,
        setup.device,
        seed=0,
        epoch=lambda: next(epochs),
        workers=setup.workers,
        decode=decode,
        max_side=2 * SIZE,
        bad_files=BadFiles(len(images), 0.0),
    )


@dataclass(frozen=True)
class Candidate:
    name: str
    batches: Callable[[Setup], Iterable[tuple[torch.Tensor, ...]]]


CANDIDATES = (
    Candidate("pil-workers", lambda setup: _epoch_batches(setup, "pil")),
    Candidate("bytes+batched-decode", lambda setup: _epoch_batches(setup, "bytes")),
    Candidate("shards+pil-workers", lambda setup: _epoch_batches(setup, "pil", shards=True)),
    Candidate("shards+batched-decode", lambda setup: _epoch_batches(setup, "bytes", shards=True)),
)


def build_folder(source: Path, per_class: int) -> Path:
    """``per_class`` CIFAR-10 images of each class upscaled to 400×300 JPEGs (kept between runs)."""
    from PIL import Image

    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        out = FOLDER / "train" / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(class_dir.iterdir())[:per_class]:
            target = out / path.name
            if not target.exists():
                with Image.open(path) as image:
                    big = image.convert("RGB").resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
                buffer = io.BytesIO()
                big.save(buffer, format="JPEG", quality=90)
                atomic_write_bytes(target, buffer.getvalue())
    return FOLDER


def folder_images(per_class: int) -> StreamingImages:
    root = FOLDER / "train"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(str(p) for p in (root / name).glob("*.jpg"))[:per_class]
        paths += files
        labels += [label] * len(files)
    return StreamingImages(paths, torch.tensor(labels), classes, image_size=SIZE)


def folder_shards(images: StreamingImages, per_class: int) -> ShardImages:
    """LitData shards of exactly ``images`` (written once, untimed, from a folder of hard links
    to them, and kept between runs), read at SIZE."""
    out = FOLDER.parent / f"shards_{per_class}"
    if not out.is_dir():
        source = FOLDER.parent / f"shard_source_{per_class}"
        shutil.rmtree(source, ignore_errors=True)
        for path in images.paths:
            link = source / "train" / Path(path).parent.name / Path(path).name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, link)
        write_shards(source, out, "litdata")
        shutil.rmtree(source)
    return load_shard_split(str(out), "train", FOLDER.parent / "cache", SIZE)


def images_per_s(batches: Iterable, augment: torch.nn.Module | None, device: torch.device) -> float:
    """Images/s of one pass over the folder, with the two views made of each batch or not."""
    generator = torch.Generator().manual_seed(0)
    images = 0
    start = time.perf_counter()
    for pixels, _, *sizes in batches:
        if augment is not None:
            augment(pixels, generator, sizes=sizes[0] if sizes else None)
        images += pixels.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images / (time.perf_counter() - start)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--per-class", type=int, default=64, help="images of each CIFAR class")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3, help="alternating passes per candidate")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (None: default)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not SHARED_CIFAR.is_dir():
        raise SystemExit(f"benchmarks/loader.py needs CIFAR-10 JPEGs at {SHARED_CIFAR}")
    build_folder(SHARED_CIFAR, args.per_class)
    device = torch.device(args.device)
    images = folder_images(args.per_class)
    shards = folder_shards(images, args.per_class)
    augment = DataRecipe("imagenet", SIZE, 3).augmentation().to(device)
    rows = []
    for workers in args.workers:
        setup = Setup(images, shards, args.batch_size, workers, device)
        built = [(c, c.batches(setup)) for c in CANDIDATES]
        for _, batches in built:  # warm-up: worker start, first decode
            images_per_s(batches, None, device)
        results: dict[str, list[tuple[float, float]]] = {c.name: [] for c in CANDIDATES}
        for _ in range(args.repeats):
            for candidate, batches in built:
                alone = images_per_s(batches, None, device)
                results[candidate.name].append((alone, images_per_s(batches, augment, device)))
        for candidate in CANDIDATES:
            runs = results[candidate.name]
            load = statistics.median(alone for alone, _ in runs)
            total = statistics.median(views for _, views in runs)
            rows.append((candidate.name, workers, load, total))
    print(
        f"`{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{len(images)} JPEGs {WIDTH}x{HEIGHT}, batch {args.batch_size}, {SIZE} px, two views, "
        f"median of {args.repeats}`\n"
    )
    print("| candidate | workers | images/s, loading alone | images/s, loading + 2 views |")
    print("|---|---:|---:|---:|")
    for name, workers, load, total in rows:
        print(f"| {name} | {workers} | {load:.0f} | {total:.0f} |")


if __name__ == "__main__":
    main()
