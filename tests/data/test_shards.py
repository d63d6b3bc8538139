"""Shards (`contrastkit prepare --format litdata|webdataset`): the round trip keeps every
image's bytes, label and class name; a shard folder is read as an image folder would be; the
loader resumed from a saved position serves the samples an uninterrupted epoch serves."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("litdata", reason="the shard tests need litdata (the shards extra)")
pytest.importorskip("webdataset", reason="the shard tests need webdataset (the shards extra)")

from contrastkit import cli
from contrastkit.data import shards
from contrastkit.data.datasets import StreamingImages, load_dataset
from contrastkit.data.shards import ShardError, read_split, split_folder, write_shards
from contrastkit.data.streaming import ShardImages

CLASSES = ("ant", "bee", "cat")
PER_CLASS = {"train": 8, "val": 2}
FORMATS = ("litdata", "webdataset")
SHARD_MB = 0.002  # a few images per shard, so every split spans several files


def write_folder(root: Path, seed: int = 0) -> dict[str, list[tuple[Path, int]]]:
    """train/ and val/ of 8×8 random images (all distinct), PNG but one JPEG per class; each
    split's (file, label) pairs in listing order (classes sorted, files sorted)."""
    rng = np.random.default_rng(seed)
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, count in PER_CLASS.items():
        files[split] = []
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                path = root / split / name / (f"{i:02d}.jpg" if i == 0 else f"{i:02d}.png")
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
                files[split].append((path, label))
    return files


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("images")
    return root, write_folder(root)


@pytest.fixture(scope="module", params=FORMATS)
def prepared(request, folder, tmp_path_factory) -> tuple[str, Path]:
    """(format, shards) of the folder, written once per format."""
    out = tmp_path_factory.mktemp("shards") / request.param
    write_shards(folder[0], out, request.param, shard_mb=SHARD_MB)
    return request.param, out


def raw_samples(split_dir: str, cache: Path) -> list[dict]:
    """Every stored sample of a split as LitData returns it (no decoding), in stored order."""
    from litdata import StreamingDataset

    dataset = StreamingDataset(read_split(split_dir, cache).source)
    return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize("split", ["train", "test"])
def test_round_trip_keeps_bytes_labels_and_class_names(prepared, folder, tmp_path, split) -> None:
    fmt, out = prepared
    files = folder[1]["train" if split == "train" else "val"]
    where = split_folder(out, split)
    assert shards.shard_format(where) == fmt
    stored = read_split(where, tmp_path)
    assert stored.classes == list(CLASSES) and stored.count == len(files)
    samples = raw_samples(where, tmp_path)
    assert [s["index"] for s in samples] == list(range(len(files)))
    for sample, (path, label) in zip(samples, files, strict=True):
        assert bytes(sample["image"]) == path.read_bytes(), path
        assert sample["label"] == label


def test_webdataset_shards_are_plain_tars_any_reader_takes(folder, tmp_path) -> None:
    """Read back with tarfile alone: `<key>.<ext>` holds the file's bytes, `<key>.cls` its label."""
    out = tmp_path / "wds"
    write_shards(folder[0], out, "webdataset", shard_mb=SHARD_MB)
    members: dict[str, bytes] = {}
    tars = sorted((out / "train").glob("*.tar"))
    assert len(tars) > 1
    for tar in tars:
        with tarfile.open(tar) as archive:
            for member in archive.getmembers():
                members[member.name] = archive.extractfile(member).read()
    for index, (path, label) in enumerate(folder[1]["train"]):
        assert members[f"{index:09d}{path.suffix}"] == path.read_bytes()
        assert members[f"{index:09d}.cls"] == str(label).encode()
    metadata = json.loads((out / "train" / shards.WEBDATASET_METADATA).read_text())
    assert metadata["classes"] == list(CLASSES)


def test_a_shard_folder_loads_as_the_image_folder_decodes(prepared, folder, tmp_path) -> None:
    """`--dataset imagefolder --data-dir SHARDS` gives the images folder streaming gives (the
    same resize and centre crop), with its labels and classes."""
    _, out = prepared
    data = load_dataset("imagefolder", "train", out, cache_dir=tmp_path, image_size=6)
    assert isinstance(data, ShardImages)
    assert len(data) == len(folder[1]["train"]) and data.classes == list(CLASSES)
    paths = [str(p) for p, _ in folder[1]["train"]]
    labels = torch.tensor([label for _, label in folder[1]["train"]])
    reference = StreamingImages(paths, labels, CLASSES, image_size=6)
    for index in (0, 1, len(paths) - 1):
        image, label = data[index]
        expected, expected_label = reference[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 6, 6)
        assert torch.equal(image, expected) and int(label) == int(expected_label)


def _ids(batch_images: torch.Tensor, ids_by_pixels: dict[bytes, int]) -> list[int]:
    return [ids_by_pixels[image.numpy().tobytes()] for image in batch_images]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_loader_serves_the_rest_of_the_epoch(folder, tmp_path, workers) -> None:
    """Stopped after 2 batches (the loader already 2 ahead, as the trainer prefetches), a new
    loader given the position after batch 2 serves exactly the epoch's remaining sample ids,
    then the same next epoch."""
    out = tmp_path / "shards"
    write_shards(folder[0], out, "litdata", shard_mb=SHARD_MB)
    files = folder[1]["train"]
    ids_by_pixels = {
        np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).tobytes(): i
        for i, (path, _) in enumerate(files)
    }
    assert len(ids_by_pixels) == len(files)
    data = load_dataset("imagefolder", "train", out, cache_dir=tmp_path)

    def epochs(batches, numbers):  # decode="pil": each FileBatch holds the decoded pixels
        return [[_ids(batch.payload, ids_by_pixels) for batch in batches.epoch(e)] for e in numbers]

    straight = epochs(data.batches(4, workers, shuffle=True, seed=3), [0, 1])
    assert len(straight[0]) == len(files) // 4
    assert sorted(i for batch in straight[0] for i in batch) == list(range(len(files)))
    assert straight[0] != straight[1]  # reshuffled each epoch

    first = data.batches(4, workers, shuffle=True, seed=3)
    iterator = first.epoch(0)
    seen = [_ids(next(iterator).payload, ids_by_pixels) for _ in range(4)]
    assert seen == straight[0][:4]
    position = first.position(2)
    del iterator, first

    resumed = data.batches(4, workers, shuffle=True, seed=3)
    resumed.resume(json.loads(json.dumps(position)), 2)  # plain values, as in a checkpoint
    assert epochs(resumed, [0, 1]) == [straight[0][2:], straight[1]]
    reread = data.batches(4, workers, shuffle=True, seed=3)
    reread.resume(None, 2)  # no loader state saved: the 2 batches are read again and skipped
    assert epochs(reread, [0]) == [straight[0][2:]]


def test_a_write_that_fails_leaves_no_output(folder, tmp_path, monkeypatch) -> None:
    original = shards._items

    def failing(paths, labels):
        yield from list(original(paths, labels))[:5]
        raise ShardError("cannot read x: disk error")

    monkeypatch.setattr(shards, "_items", failing)
    with pytest.raises(ShardError, match="disk error"):
        write_shards(folder[0], tmp_path / "out", "litdata", shard_mb=SHARD_MB)
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary folder


def test_progress_counts_every_image_of_each_split(folder, tmp_path) -> None:
    bars: dict[str, list[int]] = {}

    class Bar:
        def __init__(self, total: int, split: str) -> None:
            bars[split] = [total, 0]
            self.split = split

        def update(self, n: int) -> None:
            bars[self.split][1] += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    write_shards(folder[0], tmp_path / "out", "webdataset", progress=Bar)
    assert bars == {"train": [24, 24], "val": [6, 6]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "zip", "--out", "{new}"], "--format zip: choose one of litdata, webdataset"),
        (["--format", "litdata", "--shard-mb", "0", "--out", "{new}"], "must be > 0"),
        (["--format", "litdata", "--out", "{existing}"], "already exists and is not empty"),
        (["--format", "litdata"], "prepare --format needs --out DIR"),
    ],
)
def test_cli_refuses_bad_arguments_in_one_line(folder, tmp_path, capsys, args, message) -> None:
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "file").write_text("x")
    places = {"new": tmp_path / "new", "existing": tmp_path / "existing"}
    assert cli.main(["prepare", str(folder[0]), *[a.format(**places) for a in args]]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error
    assert not (tmp_path / "new").exists()


def test_cli_writes_shards_and_says_where(folder, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli.main(["prepare", str(folder[0]), "--format", "litdata", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"train: 24 images in 2 files under {out}/train" in printed  # one chunk + index.json
    assert split_folder(out, "test") == str(out / "val")


@pytest.mark.parametrize(
    ("make", "message"), [(False, "is not a folder"), (True, "train/<class>/")]
)
def test_cli_refuses_a_source_without_images(tmp_path, capsys, make, message) -> None:
    source = tmp_path / "source"
    if make:
        source.mkdir()
    out = ["--out", str(tmp_path / "out")]
    assert cli.main(["prepare", str(source), "--format", "webdataset", *out]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error
    assert not (tmp_path / "out").exists()


def test_an_undecodable_sample_is_named_by_its_index() -> None:
    from contrastkit.data.datasets import CorruptImageError
    from contrastkit.data.streaming import decode_sample

    with pytest.raises(CorruptImageError, match=r"^cannot decode image 7 of the shards: \S"):
        decode_sample({"index": 7, "label": 0, "image": b"not an image"}, None)
    with pytest.raises(CorruptImageError) as caught:
        decode_sample({"index": 7, "label": 0, "image": b"not an image"}, None)
    assert "BytesIO" not in str(caught.value)


def test_a_worker_hands_over_bytes_pixels_or_the_reason_never_raising() -> None:
    """`decode=bytes`: the stored bytes as they are (an undecodable sample's too: the device's
    decode finds it out); `pil`: the pixels decode_sample gives, or for an undecodable sample
    no payload and the reason naming its index."""
    from contrastkit.data.streaming import decode_sample, shard_sample

    buffer = io.BytesIO()
    Image.fromarray(np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)).save(buffer, "PNG")
    good = {"index": 3, "label": 2, "image": buffer.getvalue()}
    raw = shard_sample(good, None, "bytes")
    assert raw.index == 3 and int(raw.label) == 2 and raw.failure is None
    assert raw.payload.dtype == torch.uint8 and raw.payload.numpy().tobytes() == buffer.getvalue()
    decoded = shard_sample(good, 4, "pil")
    assert torch.equal(decoded.payload, decode_sample(good, 4)[0])
    bad = {"index": 7, "label": 1, "image": b"not an image"}
    assert shard_sample(bad, None, "bytes").payload is not None
    failed = shard_sample(bad, None, "pil")
    assert failed.payload is None and failed.index == 7 and int(failed.label) == 1
    assert failed.failure.startswith("cannot decode image 7 of the shards: ")


def test_shard_samples_are_named_by_source_and_index() -> None:
    from contrastkit.data.streaming import ShardNames

    names = ShardNames("s3://bucket/train", 3)
    assert list(names) == [f"s3://bucket/train#{i}" for i in range(3)]
    assert names[-1] == "s3://bucket/train#2"
    with pytest.raises(IndexError):
        names[3]
