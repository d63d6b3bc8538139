"""Freed host memory is kept for reuse: no page faults for a buffer freed and allocated again,
the same gradients, and `pretrain` applies it as `keep_host_memory` says."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import contrastkit.train.run as run
from tests.train.small_run import small_config

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "gnu_get_libc_version"),
    reason="mallopt's parameters are glibc's",
)

# In a fresh process, since the setting lasts for the process: the page faults of writing a
# freed 40 MiB buffer again, and a small CNN's gradients, before and after the setting.
_SCRIPT = """
import json, resource, torch
from contrastkit.models.backbones import build_backbone
from contrastkit.train.heap import keep_freed_host_memory

def faults_of_reused_buffer():
    # A 40 MiB buffer written and freed 16 times: the page faults of the last 4, once the heap
    # has grown past the fragments the tensors' small allocations leave (8 buffers, measured).
    for repeat in range(16):
        if repeat == 12:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(10 * 2**20)  # 40 MiB: glibc mmaps from 32 MiB
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4

def gradients():
    torch.manual_seed(0)
    net = build_backbone("small-cnn", 32)
    net(torch.randn(16, 3, 32, 32)).square().sum().backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])

before = (faults_of_reused_buffer(), gradients())
applied = keep_freed_host_memory()
after = (faults_of_reused_buffer(), gradients())
print(json.dumps({
    "applied": applied,
    "faults_before": before[0],
    "faults_after": after[0],
    "max_gradient_difference": (before[1] - after[1]).abs().max().item(),
}))
"""


@glibc
def test_a_freed_buffer_is_reused_without_page_faults_and_gradients_stay_equal():
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={"PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"},
        timeout=60,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["applied"]
    pages = 40 * 2**20 // 4096  # 40 MiB in 4 KiB pages
    assert result["faults_before"] > pages // 2  # glibc mmaps it afresh each time
    assert result["faults_after"] < pages // 20  # the heap's pages, already mapped
    assert result["max_gradient_difference"] == 0.0


class _ReachedBuildError(Exception):
    """Stops `pretrain` once it reaches building the module."""


@pytest.mark.parametrize("keep", [True, False])
def test_pretrain_keeps_host_memory_as_configured(tmp_path, monkeypatch, keep):
    calls: list[str] = []
    monkeypatch.setattr(run, "keep_freed_host_memory", lambda: calls.append("kept"))

    def stop(config):
        raise _ReachedBuildError

    monkeypatch.setattr(run, "build_module", stop)
    with pytest.raises(_ReachedBuildError):
        run.pretrain(small_config(tmp_path / "run", keep_host_memory=keep))
    assert calls == (["kept"] if keep else [])
