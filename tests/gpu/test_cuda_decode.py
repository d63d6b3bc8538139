"""Batched JPEG decoding on a CUDA device (nvJPEG) and whole-image training from bytes there.
Skipped without CUDA; `make gpu-check` runs it (with the other `gpu`-marked tests) on a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data.batch_decode import decode_batch
from contrastkit.train.run import pretrain
from tests.data.test_batch_decode import files  # noqa: F401  (fixture)
from tests.train.test_file_batches import _config, folder  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_decode_matches_the_cpu_decode_and_falls_back_alike(files) -> None:  # noqa: F811
    raw = [torch.from_numpy(np.fromfile(path, dtype=np.uint8)) for path in files.values()]
    on_cpu = decode_batch(raw, torch.device("cpu"), max_side=48)
    on_gpu = decode_batch(raw, torch.device("cuda"), max_side=48)
    assert on_gpu.images.is_cuda and on_gpu.kept == on_cpu.kept
    assert [p for p, _ in on_gpu.failures] == [p for p, _ in on_cpu.failures]
    assert torch.equal(on_gpu.sizes, on_cpu.sizes)
    difference = (on_gpu.images.cpu().float() - on_cpu.images.float()).abs().mean()
    assert difference < 2.0  # nvJPEG and libjpeg-turbo round the IDCT differently


def test_whole_image_training_from_bytes_on_cuda(tmp_path: Path, folder: Path) -> None:  # noqa: F811
    config = _config(tmp_path, folder, accelerator="gpu", decode="bytes", max_bad_fraction=0.1)
    result = pretrain(config)
    assert np.isfinite(result.metrics["train/loss_epoch"])
    assert result.metrics["train/bad_files"] == 2
