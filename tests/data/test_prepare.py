"""`contrastkit prepare`: the unreadable-file check and the resumable resized copy, on fixture
folders holding the file kinds ImageNet-scale folders contain (CMYK and grayscale JPEGs, a PNG
named .JPEG, a truncated JPEG, a text file named .jpg)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastkit.cli import main
from contrastkit.data.prepare import check_folder, resize_folder


def _gradient(width: int, height: int) -> Image.Image:
    """A smooth RGB image, so JPEG re-encoding changes its pixels very little."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    rgb = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    (root / "wide").mkdir(parents=True)
    (root / "tall").mkdir()
    _gradient(400, 300).save(root / "wide" / "a.JPEG", quality=95)
    _gradient(300, 600).save(root / "tall" / "b.jpg", quality=95)
    _gradient(100, 80).save(root / "tall" / "small.jpg", quality=95)
    _gradient(500, 200).convert("CMYK").save(root / "wide" / "cmyk.jpg")
    _gradient(360, 360).convert("L").save(root / "wide" / "gray.jpg")
    _gradient(640, 320).save(root / "wide" / "png_inside.JPEG", format="PNG")
    _gradient(330, 100).save(root / "wide" / "c.png")
    whole = (root / "wide" / "a.JPEG").read_bytes()
    (root / "wide" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "tall" / "notes.jpg").write_text("not an image")
    (root / "tall" / ".hidden.jpg").write_text("ignored: hidden")
    return root


BAD = {"truncated.jpg", "notes.jpg"}


def test_check_lists_exactly_the_unreadable_files(folder: Path) -> None:
    report = check_folder(folder, workers=1)
    assert report.total == 9
    assert {Path(path).name for path, _ in report.unreadable} == BAD
    assert all(reason for _, reason in report.unreadable)


def test_check_in_worker_processes_finds_the_same(folder: Path) -> None:
    assert check_folder(folder, workers=2).unreadable == check_folder(folder, workers=1).unreadable


def test_cli_check_prints_each_bad_file_and_exits_1(folder: Path, capsys) -> None:
    assert main(["prepare", str(folder), "--check", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert {line.split(": ")[1].rsplit("/", 1)[-1] for line in out.splitlines()[:-1]} == BAD
    assert out.splitlines()[-1] == "2 of 9 files unreadable"


def _sizes(root: Path) -> dict[str, tuple[int, int]]:
    sizes = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.mode == "RGB"
                sizes[str(path.relative_to(root))] = image.size
    return sizes


def test_resized_copy_keeps_layout_and_aspect(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    report = resize_folder(folder, out, max_side=320, workers=1)
    assert (report.written, report.skipped, len(report.unreadable)) == (7, 0, 2)
    assert _sizes(out) == {
        "tall/b.jpg": (160, 320),
        "tall/small.jpg": (100, 80),
        "wide/a.JPEG": (320, 240),
        "wide/c.jpg": (320, 97),  # a .png becomes a .jpg
        "wide/cmyk.jpg": (320, 128),
        "wide/gray.jpg": (320, 320),
        "wide/png_inside.JPEG": (320, 160),
    }
    # An RGB JPEG already within the size is copied byte for byte.
    assert (out / "tall/small.jpg").read_bytes() == (folder / "tall/small.jpg").read_bytes()
    # The pixels are the original's, resized: within JPEG noise of PIL's own resize.
    with Image.open(folder / "wide/a.JPEG") as original, Image.open(out / "wide/a.JPEG") as copy:
        expected = np.asarray(original.resize((320, 240), Image.Resampling.BICUBIC), np.float64)
        assert np.abs(np.asarray(copy, np.float64) - expected).mean() < 2.0
    assert not [p for p in out.rglob(".*")], "no temporary files are left behind"


def test_resized_copy_resumes_where_it_stopped(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    resize_folder(folder, out, max_side=320, workers=1)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    (out / "wide" / "a.JPEG").unlink()  # as if the run had stopped before this file
    report = resize_folder(folder, out, max_side=320, workers=2)
    assert (report.written, report.skipped) == (1, 6)
    for path, stamp in stamps.items():
        if path.name != "a.JPEG":
            assert path.stat().st_mtime_ns == stamp, f"{path} was rewritten"
    assert (out / "wide" / "a.JPEG").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--check", "--max-side", "9"], "either --check or --max-side"),
        (["--max-side", "320"], "needs --out"),
        (["--max-side", "0", "--out", "X"], "--max-side 0: must be >= 1"),
        (["--max-side", "9", "--quality", "101", "--out", "X"], "--quality 101"),
    ],
)
def test_bad_arguments_are_one_line(folder: Path, args, message, capsys, tmp_path) -> None:
    args = [a.replace("X", str(tmp_path / "x")) for a in args]
    assert main(["prepare", str(folder), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_copy_into_the_source_is_refused(folder: Path, capsys) -> None:
    assert main(["prepare", str(folder), "--max-side", "9", "--out", str(folder / "x")]) == 2
    assert "must not be" in capsys.readouterr().err
    assert not (folder / "x").exists()


def test_missing_folder_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["prepare", str(tmp_path / "nope"), "--check"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
