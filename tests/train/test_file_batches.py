"""Streamed image folders in training: whole images decoded from bytes travel padded with their
sizes, the old PIL path still centre-crops, and unreadable files are skipped, counted, named in
the log and the checkpoint, and stop the run with one line past max_bad_fraction."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit import cli
from contrastkit.data.augment import BatchAugment
from contrastkit.data.bad_files import BadFiles, TooManyBadFilesError
from contrastkit.data.datasets import StreamingImages
from contrastkit.data.file_loader import FileBatchFinisher, collate_files, file_samples
from contrastkit.train.config import ConfigError, build_config
from contrastkit.train.data import EpochBatches
from contrastkit.train.run import pretrain

from .small_run import small_config

BAD = ("c0/truncated.jpg", "c1/notes.jpg")
SIDES = ((20, 34), (30, 16), (24, 24), (18, 40), (36, 22))  # (height, width)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An ImageNet-like train/<class>/ tree: 20 JPEGs of five sizes and two unreadable files."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(20):
        h, w = SIDES[i % len(SIDES)]
        (root / "train" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "train" / f"c{i % 2}" / f"img{i:02d}.jpg", quality=95)
    whole = (root / "train" / "c0" / "img00.jpg").read_bytes()
    (root / "train" / BAD[0]).write_bytes(whole[: len(whole) // 2])
    (root / "train" / BAD[1]).write_text("not an image")
    return root


def _streaming(folder: Path) -> StreamingImages:
    paths = sorted(str(p) for p in (folder / "train").rglob("*.jpg"))
    labels = torch.tensor([int(Path(p).parent.name[1:]) for p in paths])
    return StreamingImages(paths, labels, ["c0", "c1"], image_size=16)


def _batches(
    images: StreamingImages, decode: str, bad: BadFiles, workers: int = 0
) -> list[tuple[torch.Tensor, ...]]:
    batches = EpochBatches(
        images,
        4,
        torch.device("cpu"),
        seed=0,
        epoch=lambda: 0,
        shuffle=False,
        workers=workers,
        decode=decode,
        bad_files=bad,
    )
    return list(batches)


def _bad_names(pairs) -> set[str]:
    return {"/".join(Path(path).parts[-2:]) for path, *_ in pairs}


@pytest.mark.parametrize("workers", [0, 2])
def test_bytes_batches_hold_whole_images_with_their_sizes(folder: Path, workers: int) -> None:
    images = _streaming(folder)
    bad = BadFiles(len(images), 0.5)
    batches = _batches(images, "bytes", bad, workers)
    good = [p for p in images.paths if "img" in p]
    assert sum(len(b[1]) for b in batches) == len(good)
    assert _bad_names(bad.as_list()) == set(BAD)
    rows = [(image, size) for b in batches for image, size in zip(b[0], b[2], strict=True)]
    for path, (image, size) in zip(good, rows, strict=True):  # shuffle=False: listing order
        expected = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
        h, w = expected.shape[1:]
        assert size.tolist() == [h, w]
        assert np.abs(image[:, :h, :w].numpy().astype(float) - expected).mean() < 1.5
    labels = torch.cat([b[1] for b in batches])
    assert labels.tolist() == [int(Path(p).parent.name[1:]) for p in good]


def test_pil_batches_stay_centre_crops_and_skip_the_same_files(folder: Path) -> None:
    images = _streaming(folder)
    bad = BadFiles(len(images), 0.5)
    batches = _batches(images, "pil", bad)
    assert all(len(b) == 2 and b[0].shape[1:] == (3, 16, 16) for b in batches)
    assert sum(len(b[1]) for b in batches) == 20
    assert _bad_names(bad.as_list()) == set(BAD)


def test_bad_files_past_the_fraction_stop_with_one_line(folder: Path) -> None:
    images = _streaming(folder)
    with pytest.raises(
        TooManyBadFilesError, match=r"2 of 22 training files .* max_bad_fraction=0\.05"
    ):
        _batches(images, "bytes", BadFiles(len(images), 0.05))


def _config(tmp_path: Path, folder: Path, **values: object):
    return small_config(
        tmp_path / "run",
        dataset="imagenet",
        data_dir=str(folder),
        image_size=16,
        batch_size=8,
        probe=False,
        workers=0,
        **values,
    )


@pytest.mark.parametrize("decode", ["bytes", "pil"])
def test_training_skips_bad_files_and_names_them(
    tmp_path: Path,
    folder: Path,
    decode: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = []  # the sizes each training step's augmentation got
    forward = BatchAugment.forward

    def spy(self, images, generator=None, sizes=None):
        seen.append(None if sizes is None else (tuple(images.shape[2:]), sizes.clone()))
        return forward(self, images, generator, sizes)

    monkeypatch.setattr(BatchAugment, "forward", spy)
    with caplog.at_level(logging.WARNING):
        result = pretrain(_config(tmp_path, folder, decode=decode, max_bad_fraction=0.1))
    if decode == "pil":
        assert seen == [None, None]  # 20 readable files, batches of 8
    else:  # whole images: padded to the batch's largest sides, each with its own size
        assert len(seen) == 2 and all(s is not None for s in seen)
        for padded, sizes in seen:
            assert (
                padded == tuple(sizes.amax(0).tolist()) and len(set(map(tuple, sizes.tolist()))) > 1
            )
    assert np.isfinite(result.metrics["train/loss_epoch"])
    assert result.metrics["train/bad_files"] == 2
    logged = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert _bad_names([(m.split()[3],) for m in logged]) == set(BAD)
    meta = torch.load(result.checkpoint, weights_only=True)["contrastkit"]
    assert _bad_names(meta["bad_files"]) == set(BAD)


def test_cli_stops_with_one_line_past_max_bad_fraction(
    tmp_path: Path, folder: Path, capsys
) -> None:
    args = ["pretrain", "--dataset", "imagenet", "--data-dir", str(folder), "--image-size", "16"]
    args += ["--batch-size", "8", "--workers", "0", "--progress", "false", "--probe", "false"]
    args += ["--decode", "bytes", "--max-bad-fraction", "0.05", "--loggers", "csv"]
    args += ["--out", str(tmp_path / "r")]
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unreadable" in err[0] and "max_bad_fraction=0.05" in err[0]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("decode", "gpu", "unknown decode 'gpu'; valid: bytes, pil"),
        ("max_side", 0, "max_side=0: must be >= 1"),
        ("max_bad_fraction", 1.5, "max_bad_fraction=1.5: must be in [0, 1]"),
    ],
)
def test_bad_loading_options_are_one_line(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_config([{"dataset": "digits", key: value}])


def test_a_short_batch_is_topped_up_for_equal_rows_across_ranks(folder: Path) -> None:
    """With fill_to (multi-device runs) the readable samples repeat up to the batch size."""
    images = _streaming(folder)
    bad_index = next(i for i, p in enumerate(images.paths) if p.endswith(BAD[0]))
    samples = file_samples(images, "bytes")
    batch = collate_files([samples[i] for i in (0, bad_index, 1, 2)])
    finisher = FileBatchFinisher(images.paths, torch.device("cpu"), BadFiles(22, 0.5), fill_to=4)
    pixels, labels, sizes = finisher(batch)
    assert len(labels) == 4 and labels[3] == labels[0]
    assert torch.equal(pixels[3], pixels[0]) and torch.equal(sizes[3], sizes[0])
    shrunk = FileBatchFinisher(images.paths, torch.device("cpu"), BadFiles(22, 0.5))(batch)
    assert len(shrunk[1]) == 3  # one device: the batch just loses the unreadable file


def test_an_unreadable_batch_repeats_the_last_one_across_ranks(folder: Path) -> None:
    """Several ranks must take equal steps: a batch of only unreadable files is replaced by the
    last batch served with fill_to, and left out on one device."""
    images = _streaming(folder)
    bad = [i for i, p in enumerate(images.paths) if p.endswith(tuple(BAD))]
    samples = file_samples(images, "bytes")
    good, unreadable = (collate_files([samples[i] for i in rows]) for rows in ((0, 1), bad))
    finisher = FileBatchFinisher(images.paths, torch.device("cpu"), BadFiles(22, 0.5), fill_to=2)
    assert finisher(unreadable) is None  # nothing served yet
    served = finisher(good)
    assert all(a is b for a, b in zip(finisher(unreadable), served, strict=True))
    one_device = FileBatchFinisher(images.paths, torch.device("cpu"), BadFiles(22, 0.5))
    one_device(good)
    assert one_device(unreadable) is None


class _StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.should_stop = True


def test_resume_keeps_the_bad_files_and_reproduces_the_whole_image_run(
    tmp_path: Path, folder: Path
) -> None:
    """The bad-file list survives --resume (each file counted once), and the resumed run from
    bytes ends with the weights of an uninterrupted one."""
    values = {"epochs": 2, "decode": "bytes", "max_bad_fraction": 0.1}
    straight = pretrain(_config(tmp_path / "straight", folder, **values))
    pretrain(_config(tmp_path / "stopped", folder, **values), callbacks=[_StopAfterFirstEpoch()])
    first = torch.load(tmp_path / "stopped" / "run" / "last.ckpt", weights_only=True)
    assert _bad_names(first["contrastkit"]["bad_files"]) == set(BAD)
    resumed = pretrain(_config(tmp_path / "stopped", folder, resume=True, **values))
    final = torch.load(resumed.checkpoint, weights_only=True)
    assert _bad_names(final["contrastkit"]["bad_files"]) == set(BAD)
    assert len(final["contrastkit"]["bad_files"]) == 2 == resumed.metrics["train/bad_files"]
    expected = torch.load(straight.checkpoint, weights_only=True)["state_dict"]
    for name, weight in final["state_dict"].items():
        torch.testing.assert_close(weight, expected[name], rtol=0, atol=0, msg=name)
