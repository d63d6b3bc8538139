"""Pretraining on image folders: unlabelled folders train without a probe, a single class warns
instead of scoring 1.0, and the folder's measured statistics normalise training and evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.eval import load_encoder
from contrastkit.train.config import ConfigError
from contrastkit.train.run import build_module, pretrain
from tests.data.test_folder_statistics import numpy_stats, write_images

from .small_run import small_config


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))


def _folder_config(tmp_path: Path, data: Path, **values: object):
    return small_config(
        tmp_path / "run", dataset="imagefolder", data_dir=str(data), batch_size=8, **values
    )


def _notes(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if fragment in r.getMessage()]


def test_flat_folder_pretrains_without_a_probe_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_images(tmp_path / "flat", 20)
    with caplog.at_level(logging.WARNING):
        result = pretrain(_folder_config(tmp_path, tmp_path / "flat"))
    assert len(_notes(caplog, "unlabelled")) == 1
    assert "20 unlabelled images" in _notes(caplog, "unlabelled")[0]
    assert not any(key.startswith("val/") for key in result.metrics)
    checkpoint = torch.load(result.checkpoint, weights_only=True)
    assert "probe" not in checkpoint and np.isfinite(result.metrics["train/loss_epoch"])


def test_flat_folder_refuses_a_method_that_needs_labels(tmp_path: Path) -> None:
    write_images(tmp_path / "flat", 20)
    with pytest.raises(ConfigError, match="method=supcon needs labels"):
        build_module(_folder_config(tmp_path, tmp_path / "flat", method="supcon"))


def test_single_class_warns_and_reports_no_probe_accuracy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_images(tmp_path / "data" / "train" / "dummy", 20)
    with caplog.at_level(logging.WARNING):
        result = pretrain(_folder_config(tmp_path, tmp_path / "data"))
    assert len(_notes(caplog, "single class (dummy)")) == 1
    assert "val/top1" not in result.metrics  # it used to say 1.0


def test_training_and_evaluation_normalise_with_the_folders_statistics(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "data" / "train" / "a", 12) + write_images(
        tmp_path / "data" / "train" / "b", 12, seed=1
    )
    config = _folder_config(tmp_path, tmp_path / "data", val_fraction=0.25)
    module = build_module(config)
    mean, std = numpy_stats(paths)
    np.testing.assert_allclose(module.data.mean_std(), (mean, std), atol=1e-12)
    # Every augmented view standardises with them.
    for view in module.augment.views:
        np.testing.assert_allclose((view.mean, view.std), (mean, std), atol=1e-12)
    # Un-augmented images of the whole folder come out with mean 0 and std 1 per channel.
    every = torch.cat([module.data.train.images, module.data.val.images])
    normalised = module.data.normalize(every).double()
    np.testing.assert_allclose(normalised.mean(dim=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(dim=(0, 2, 3), correction=0), 1, atol=1e-5)

    checkpoint = pretrain(config).checkpoint
    encoder = load_encoder(str(checkpoint))
    recipe = encoder.recipe()
    np.testing.assert_allclose(recipe.mean_std(), (mean, std), atol=1e-6)
