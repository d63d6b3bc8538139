"""Shards through the same batch path as folders: undecodable samples are skipped, counted,
named ``<split source>#<index>`` in the log and the checkpoint, and stop the run with one line
past max_bad_fraction; with decode=bytes training gets whole images with their sizes; a batch
that was all unreadable does not shift a resumed position."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit import cli
from contrastkit.data.augment import BatchAugment
from contrastkit.data.bad_files import BadFiles
from contrastkit.train.data import EpochBatches
from contrastkit.train.run import pretrain

from .small_run import small_config

pytest.importorskip("litdata", reason="training from shards needs litdata (the shards extra)")

from contrastkit.data.datasets import load_dataset
from contrastkit.data.shards import read_split, split_folder, write_shards

SIDES = ((20, 34), (30, 16), (24, 24), (18, 40), (36, 22))  # (height, width)
GOOD = {"c0": 10, "c1": 12}  # JPEGs per class; c0 also holds the two bad files, listed last
BAD = ("c0/zz_notes.jpg", "c0/zz_truncated.jpg")  # stored samples 10 and 11 of 24


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LitData shards of a train/<class>/ folder: 22 JPEGs of five sizes, and two bad files."""
    root = tmp_path_factory.mktemp("bad-shards")
    rng = np.random.default_rng(0)
    i = 0
    for name, count in GOOD.items():
        (root / "images" / "train" / name).mkdir(parents=True)
        for _ in range(count):
            h, w = SIDES[i % len(SIDES)]
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / "train" / name / f"img{i:02d}.jpg")
            i += 1
    whole = (root / "images" / "train" / "c0" / "img00.jpg").read_bytes()
    (root / "images" / "train" / BAD[0]).write_text("not an image")
    (root / "images" / "train" / BAD[1]).write_bytes(whole[: len(whole) // 2])
    write_shards(root / "images", root / "shards", "litdata", shard_mb=0.002)
    return root / "shards"


def _bad_names(shards: Path, tmp_path: Path) -> set[str]:
    """`<split source>#<index>` of the stored samples holding the bad files' bytes, found by
    reading every stored sample back (not from the listing order the writer used)."""
    from litdata import StreamingDataset

    source = read_split(split_folder(shards, "train"), tmp_path).source
    dataset = StreamingDataset(source)
    bad_bytes = {(shards.parent / "images" / "train" / b).read_bytes() for b in BAD}
    return {
        f"{source}#{dataset[i]['index']}"
        for i in range(len(dataset))
        if bytes(dataset[i]["image"]) in bad_bytes
    }


def _values(shards: Path, out: Path, **extra: object) -> dict[str, object]:
    return {
        "dataset": "imagefolder",
        "data_dir": str(shards),
        "cache_dir": str(out.parent / "cache"),
        "image_size": 16,
        "batch_size": 8,
        "probe": False,
        "workers": 0,
        **extra,
    }


@pytest.mark.parametrize("decode", ["bytes", "pil"])
def test_training_skips_bad_samples_and_names_them(
    tmp_path: Path,
    shards: Path,
    decode: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = []  # the padded size and sizes each training step's augmentation got
    forward = BatchAugment.forward

    def spy(self, images, generator=None, sizes=None):
        seen.append(None if sizes is None else (tuple(images.shape[2:]), sizes.clone()))
        return forward(self, images, generator, sizes)

    monkeypatch.setattr(BatchAugment, "forward", spy)
    values = _values(shards, tmp_path / "run", decode=decode, max_bad_fraction=0.1, max_side=64)
    with caplog.at_level(logging.WARNING):
        result = pretrain(small_config(tmp_path / "run", **values))
    assert len(seen) == 3  # 24 samples, batches of 8: the epoch went through
    if decode == "pil":
        assert seen == [None, None, None]  # centre crops, no sizes
    else:  # whole images of five sizes (none over max_side), padded to each batch's largest
        for padded, sizes in seen:
            assert padded == tuple(sizes.amax(0).tolist())
            assert len(set(map(tuple, sizes.tolist()))) > 1
        heights_widths = {tuple(s) for _, sizes in seen for s in sizes.tolist()}
        assert heights_widths == set(SIDES)
    expected = _bad_names(shards, tmp_path)
    assert len(expected) == 2
    assert np.isfinite(result.metrics["train/loss_epoch"])
    assert result.metrics["train/bad_files"] == 2
    logged = [r.getMessage() for r in caplog.records if "skipped unreadable" in r.getMessage()]
    assert {m.split()[3] for m in logged} == expected
    meta = torch.load(result.checkpoint, weights_only=True)["contrastkit"]
    assert {name for name, _ in meta["bad_files"]} == expected


def test_cli_stops_with_one_line_past_max_bad_fraction(tmp_path: Path, shards: Path, capsys):
    args = ["pretrain", "--dataset", "imagefolder", "--data-dir", str(shards), "--workers", "0"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--image-size", "16", "--batch-size", "8"]
    args += ["--decode", "bytes", "--max-bad-fraction", "0.05", "--probe", "false"]
    args += ["--progress", "false", "--loggers", "csv", "--out", str(tmp_path / "r")]
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "2 of 24 training files are unreadable" in err[0] and "max_bad_fraction=0.05" in err[0]
    assert err[0].split("latest: ")[1].split(": ")[0] in _bad_names(shards, tmp_path)


def _epoch(shards: Path, tmp_path: Path, position: dict | None = None):
    data = load_dataset("imagefolder", "train", shards, cache_dir=tmp_path, image_size=16)
    batches = EpochBatches(
        data,
        2,
        torch.device("cpu"),
        seed=0,
        epoch=lambda: 0,
        shuffle=False,
        workers=0,
        decode="pil",
        bad_files=BadFiles(len(data), 0.5),
    )
    if position is not None:
        batches.resume(position)
    return batches


def test_a_dropped_batch_does_not_shift_the_resumed_position(shards: Path, tmp_path: Path):
    """Batches of 2 in stored order: the sixth read (samples 10 and 11) is all unreadable and
    left out, so the position after 6 served batches is after 7 read, and a loader resumed
    there serves exactly the rest of the epoch."""
    straight = list(_epoch(shards, tmp_path))
    assert len(straight) == 11  # 12 batches read, one left out
    stopped = _epoch(shards, tmp_path)
    iterator = iter(stopped)
    for _ in range(6):
        next(iterator)
    position = stopped.position(6)
    assert position["read"] == 7 and position["loader"]["num_samples_yielded"] == 14
    del iterator
    resumed = _epoch(shards, tmp_path, {"batches": 6, **position})
    rest = list(resumed)
    assert len(rest) == len(straight) - 6
    for (images, labels), (expected_images, expected_labels) in zip(
        rest, straight[6:], strict=True
    ):
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
