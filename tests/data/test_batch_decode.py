"""Batched decoding of raw file bytes: torchvision's decode_jpeg with a PIL fallback for the
files it rejects (PNG named .JPEG, grayscale and CMYK JPEGs to three channels), unreadable
files reported rather than raised, oversized images shrunk; pixels as PIL decodes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit.data.batch_decode import decode_batch
from tests.data.test_prepare import _gradient

CPU = torch.device("cpu")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """One file of each kind an ImageNet-scale folder holds, as test_prepare's fixture."""
    paths = {
        name: tmp_path / f"{name}.JPEG"
        for name in ("rgb", "cmyk", "gray", "png", "truncated", "text")
    }
    _gradient(40, 30).save(paths["rgb"], quality=95)
    _gradient(50, 20).convert("CMYK").save(paths["cmyk"], format="JPEG", quality=95)
    _gradient(36, 36).convert("L").save(paths["gray"], format="JPEG", quality=95)
    _gradient(64, 32).save(paths["png"], format="PNG")
    whole = paths["rgb"].read_bytes()
    paths["truncated"].write_bytes(whole[: len(whole) // 2])
    paths["text"].write_text("not an image")
    return paths


def _bytes(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8))


def _pil(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).copy())


def test_every_readable_kind_decodes_as_pil_and_the_rest_are_reported(files) -> None:
    names = list(files)
    decoded = decode_batch([_bytes(files[n]) for n in names], CPU)
    assert [names[p] for p in decoded.kept] == ["rgb", "cmyk", "gray", "png"]
    assert {names[p] for p, _ in decoded.failures} == {"truncated", "text"}
    assert all(reason for _, reason in decoded.failures)
    for row, position in enumerate(decoded.kept):
        expected = _pil(files[names[position]])
        h, w = expected.shape[1:]
        assert decoded.sizes[row].tolist() == [h, w]
        got = decoded.images[row, :, :h, :w]
        # libjpeg-turbo in torchvision and PIL's libjpeg may round the IDCT differently
        assert (got.float() - expected.float()).abs().mean() < 1.5, names[position]
        assert decoded.images[row, :, h:].eq(0).all() and decoded.images[row, :, :, w:].eq(0).all()
    gray = decoded.images[decoded.kept.index(names.index("gray"))]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_all_good_jpegs_take_the_batched_call(files, monkeypatch) -> None:
    """One decode_jpeg call for a batch it can decode whole, identical to one call per file."""
    import torchvision.io

    calls = []
    original = torchvision.io.decode_jpeg
    monkeypatch.setattr(
        torchvision.io, "decode_jpeg", lambda data, **kw: calls.append(data) or original(data, **kw)
    )
    batch = [_bytes(files["rgb"]), _bytes(files["cmyk"]), _bytes(files["rgb"])]
    decoded = decode_batch(batch, CPU)
    assert len(calls) == 1 and isinstance(calls[0], list)
    assert decoded.kept == [0, 1, 2] and not decoded.failures
    torch.testing.assert_close(decoded.images[0], decoded.images[2])


def test_images_over_max_side_are_shrunk_with_their_aspect(files) -> None:
    decoded = decode_batch([_bytes(files["png"]), _bytes(files["rgb"])], CPU, max_side=32)
    assert decoded.sizes.tolist() == [[16, 32], [24, 32]]  # 64x32 -> 32x16, 40x30 -> 32x24
    assert decoded.images.shape == (2, 3, 24, 32)
    reference = Image.open(files["png"]).convert("RGB").resize((32, 16), Image.Resampling.BILINEAR)
    expected = torch.from_numpy(np.asarray(reference).transpose(2, 0, 1).copy()).float()
    assert (decoded.images[0, :, :16].float() - expected).abs().mean() < 2.0


def test_a_batch_of_only_bad_files_is_empty(files) -> None:
    decoded = decode_batch([_bytes(files["text"]), _bytes(files["truncated"])], CPU)
    assert decoded.kept == [] and len(decoded.failures) == 2 and decoded.images.shape[0] == 0
