"""CIFAR-10's training folder (train/<class>/NNNN.jpg) as arrays, or packed into one file.

The GPU machine sees only the working tree, not ../shared/data, so `make gpu-check` first packs
the folder into one git-ignored file under carry/ that travels with the tree (at most 64 MiB
in all). The pack keeps each image's original JPEG bytes, unchanged: all 50,000 images take
44 MiB that way, against 147 MiB as uint8 pixels, and decoding them back is lossless with
respect to the folder. It is an uncompressed .npz of plain arrays (no pickle):
`jpeg` (all files' bytes, concatenated), `offsets` (N + 1), `labels` (N) and `classes`.
Usage: python -m benchmarks.cifar_pack [--folder ../shared/data/cifar10/train]
[--out carry/cifar10_train.npz] [--limit-per-class N]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from contrastkit.fileio import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT.parent / "shared" / "data" / "cifar10" / "train"
PACK = ROOT / "carry" / "cifar10_train.npz"


def _listing(folder: Path, limit_per_class: int | None) -> tuple[list[Path], list[int], list[str]]:
    """The first `limit_per_class` files (by name) of each class folder, classes by name."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{folder}: no class folders (expected train/<class>/*.jpg)")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted((folder / name).glob("*.jpg"))[:limit_per_class]
        paths += files
        labels += [label] * len(files)
    return paths, labels, classes


def pack(folder: Path, out: Path, limit_per_class: int | None = None) -> Path:
    """Write the folder's JPEG bytes, labels and class names into one .npz at `out`."""
    paths, labels, classes = _listing(folder, limit_per_class)
    blobs = [p.read_bytes() for p in paths]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    buffer = io.BytesIO()
    np.savez(
        buffer,
        jpeg=np.frombuffer(b"".join(blobs), dtype=np.uint8),
        offsets=offsets,
        labels=np.asarray(labels, dtype=np.int64),
        classes=np.asarray(classes),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buffer.getvalue())
    return out


def _decode(blobs: list[bytes]) -> Tensor:
    """uint8 (N, 3, H, W) from JPEG bytes."""
    arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def load(source: Path, limit_per_class: int | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """(uint8 images (N, 3, 32, 32), labels, class names) from the folder or a pack, keeping
    the first `limit_per_class` images of each class."""
    if source.is_dir():
        paths, labels, classes = _listing(source, limit_per_class)
        return _decode([p.read_bytes() for p in paths]), torch.tensor(labels), classes
    with np.load(source, allow_pickle=False) as data:
        jpeg, offsets = data["jpeg"], data["offsets"]
        labels, classes = torch.from_numpy(data["labels"]), [str(c) for c in data["classes"]]
    keep = _first_per_class(labels, limit_per_class)
    blobs = [jpeg[offsets[i] : offsets[i + 1]].tobytes() for i in keep.tolist()]
    return _decode(blobs), labels[keep], classes


def _first_per_class(labels: Tensor, limit: int | None) -> Tensor:
    """Indices of the first `limit` samples of each class, in their stored order."""
    if limit is None:
        return torch.arange(len(labels))
    rank = torch.zeros_like(labels)
    for value in labels.unique():
        members = labels == value
        rank[members] = torch.arange(int(members.sum()))
    return torch.nonzero(rank < limit).flatten()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=FOLDER)
    parser.add_argument("--out", type=Path, default=PACK)
    parser.add_argument("--limit-per-class", type=int, default=None)
    args = parser.parse_args(argv)
    out = pack(args.folder, args.out, args.limit_per_class)
    with np.load(out, allow_pickle=False) as data:
        count = len(data["labels"])
    print(f"packed {count} images into {out} ({out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
