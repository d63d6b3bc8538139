"""Feature extraction: eval-mode features of the whole split, cached once per weights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from contrastkit.data import load_dataset
from contrastkit.eval import EvaluationError, cache_path, extract_features, load_encoder
from contrastkit.models.backbones import Backbone


def _forbid_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self, images):
        raise AssertionError("features were recomputed instead of read from the cache")

    monkeypatch.setattr(Backbone, "forward", refuse)


def test_features_cover_the_split_in_order(checkpoint: Path) -> None:
    encoder = load_encoder(str(checkpoint))
    features, labels = extract_features(encoder, "test")
    split = load_dataset("digits", "test")
    assert features.dtype == torch.float32 and features.shape == (359, 256)
    assert torch.equal(labels, split.labels)
    projected, _ = extract_features(encoder, "test", "projector", batch_size=100)
    assert projected.shape == (359, 32)


def test_features_are_the_eval_mode_forward_of_normalised_images(checkpoint: Path) -> None:
    encoder = load_encoder(str(checkpoint))
    features, _ = extract_features(encoder, "test", batch_size=64)
    images = load_dataset("digits", "test").images[:10]
    inputs = (images.float() / 255 - 0.3053) / 0.3760  # digits' statistics
    with torch.no_grad():
        expected = encoder.backbone(inputs)
    torch.testing.assert_close(features[:10], expected, rtol=1e-5, atol=1e-5)


def test_second_extraction_reads_the_cache(
    checkpoint: Path, feature_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = load_encoder(str(checkpoint))
    first = extract_features(encoder, "train", "projector")
    path = cache_path(encoder, "train", "projector")
    assert path.is_file() and path.parent == feature_cache / "features"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left over
    _forbid_forward(monkeypatch)
    again = extract_features(load_encoder(str(checkpoint)), "train", "projector")
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    with pytest.raises(AssertionError, match="recomputed"):
        extract_features(encoder, "test", "projector")  # another split: not cached yet


def test_a_rewritten_checkpoint_is_extracted_again(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "last.ckpt"
    shutil.copy(checkpoint, copy)
    extract_features(load_encoder(str(copy)), "test")
    os.utime(copy, ns=(0, copy.stat().st_mtime_ns + 10**9))
    _forbid_forward(monkeypatch)
    with pytest.raises(AssertionError, match="recomputed"):
        extract_features(load_encoder(str(copy)), "test")


def test_random_encoders_are_cached_by_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    seed0, _ = extract_features(load_encoder("random:small-cnn"), "test")
    seed1, _ = extract_features(load_encoder("random:small-cnn", seed=1), "test")
    assert not torch.equal(seed0, seed1)
    _forbid_forward(monkeypatch)
    assert torch.equal(extract_features(load_encoder("random:small-cnn"), "test")[0], seed0)


def test_an_unreadable_cache_file_is_recomputed(checkpoint: Path) -> None:
    encoder = load_encoder(str(checkpoint))
    expected, _ = extract_features(encoder, "test")
    cache_path(encoder, "test", "backbone").write_bytes(b"not a tensor file")
    with pytest.warns(UserWarning, match="recomputing"):
        features, _ = extract_features(encoder, "test")
    assert torch.equal(features, expected)


def test_projector_features_need_a_projector() -> None:
    encoder = load_encoder("random:small-cnn")
    with pytest.raises(EvaluationError, match="random:small-cnn: a random backbone has no proj"):
        extract_features(encoder, "test", "projector")
    with pytest.raises(EvaluationError, match="unknown features"):
        extract_features(encoder, "test", "head")
