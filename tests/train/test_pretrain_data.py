"""What a pretraining run trains on and what its probe reports on: the whole training split with
the test split for the probe by default, a held-out part with val_fraction, STL-10's unlabeled
split, and in-memory images at another `image_size`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit.data import InMemoryImages, load_dataset
from contrastkit.train import data as train_data
from contrastkit.train.config import build_config
from contrastkit.train.data import load_pretrain_data, resolved_augmentation
from contrastkit.train.factory import method_from_config


def config(**values: object):
    return build_config([{"dataset": "digits", "batch_size": 32, **values}])


def test_by_default_all_training_images_pretrain_and_the_probe_reports_on_test() -> None:
    data = load_pretrain_data(config())
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert torch.equal(data.train.images, train.images)
    assert data.val is not None and torch.equal(data.val.labels, test.labels)
    assert "test split of digits" in data.val_note


def test_val_fraction_holds_out_part_of_the_training_split() -> None:
    data = load_pretrain_data(config(val_fraction=0.25))
    train = load_dataset("digits", "train")
    assert len(data.train) + len(data.val) == len(train)
    assert abs(len(data.val) / len(train) - 0.25) < 0.02
    assert "held-out last 0.25" in data.val_note


def test_without_a_test_split_no_probe_runs_and_the_note_says_why(tmp_path: Path) -> None:
    for label in ("a", "b"):
        folder = tmp_path / "train" / label
        folder.mkdir(parents=True)
        for i in range(20):
            Image.fromarray(np.full((8, 8, 3), i * 10, np.uint8)).save(folder / f"{i}.png")
    values = {"dataset": "imagefolder", "data_dir": str(tmp_path), "cache_dir": str(tmp_path)}
    data = load_pretrain_data(config(**values, workers=0))
    assert data.val is None and len(data.train) == 40
    assert data.val_note.startswith("no probe: imagefolder has no test split")
    assert load_pretrain_data(config(probe=False)).val_note == "no probe: probe=false"


def fake_stl10(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = {"train": 20, "unlabeled": 100, "test": 30}

    def load(name: str, split: str, *args: object, **kwargs: object) -> InMemoryImages:
        n = sizes[split]
        labels = torch.full((n,), -1) if split == "unlabeled" else torch.arange(n) % 10
        images = torch.full((n, 3, 8, 8), list(sizes).index(split), dtype=torch.uint8)
        return InMemoryImages(images, labels, [str(i) for i in range(10)])

    monkeypatch.setattr(train_data, "load_dataset", load)


def test_stl10_pretrains_on_unlabeled_with_or_without_train(monkeypatch) -> None:
    fake_stl10(monkeypatch)
    both = load_pretrain_data(config(dataset="stl10", data_dir="x", batch_size=16))
    assert len(both.train) == 120 and len(both.val) == 30
    only = load_pretrain_data(
        config(dataset="stl10", data_dir="x", batch_size=16, stl10_split="unlabeled")
    )
    assert len(only.train) == 100 and bool((only.train.labels == -1).all())
    assert only.val is None and "stl10_split=unlabeled" in only.val_note


def test_in_memory_images_train_at_image_size_resized_on_the_device() -> None:
    cfg = config(image_size=20, augment="byol")
    data = load_pretrain_data(cfg)
    assert data.train.images.shape[-1] == 8  # stored as they are
    assert data.image_size == 20
    views = data.augmentation(cfg)(data.train.images[:4], torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(4, 1, 20, 20)] * 2
    inputs = data.normalize(data.train.images[:4])
    assert inputs.shape == (4, 1, 20, 20)
    # un-augmented inputs: the bilinear upsampling of the normalised stored image
    mean, std = (t.squeeze() for t in data.recipe.normalization())
    small = (data.train.images[:4].float() / 255 - mean) / std
    up = torch.nn.functional.interpolate(small, size=20, mode="bilinear", align_corners=False)
    torch.testing.assert_close(inputs, up, atol=1e-5, rtol=0)


def test_cifar_at_224_validates_and_gets_the_standard_stem() -> None:
    cfg = build_config([{"dataset": "cifar10", "image_size": 224, "backbone": "resnet18"}])
    views = resolved_augmentation(cfg)
    assert [v["crop_size"] for v in views] == [224, 224]
    backbone = method_from_config(cfg, 224, 3, 10).backbone.body
    assert backbone.conv1.stride == (2, 2)
    small = build_config([{"dataset": "cifar10", "backbone": "resnet18", "stem": "small"}])
    assert method_from_config(small, 224, 3, 10).backbone.body.conv1.stride == (1, 1)
