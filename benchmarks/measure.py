"""Timing and peak-memory measurement shared by the benchmarks (and the memory tests)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch
from torch.profiler import ProfilerActivity, profile

Step = Callable[[], object]  # one unit of measured work
MIB = 2**20


def prepare(threads: int | None, seed: int = 0) -> None:
    """Set the torch thread count (None: torch's default), seed the random inputs, and flush
    denormal floats to zero for every candidate alike, as `contrastkit pretrain` does."""
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.set_flush_denormal(True)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # glibc's malloc.h
_GLIBC_MMAP_THRESHOLD_MAX = 32 * MIB  # where glibc's adaptive mmap threshold stops growing


def glibc_settled_allocator() -> None:
    """glibc's allocator as a process's own thresholds settle (undoing
    `contrastkit.train.heap.keep_freed_host_memory` for a peer measured in the same process):
    allocations above 32 MiB mmap'ed and unmapped on free, the heap trimmed above 64 MiB."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "gnu_get_libc_version"):
        return  # not glibc: keep_freed_host_memory changed nothing either
    libc.mallopt(_M_MMAP_MAX, 65536)
    libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_THRESHOLD_MAX)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so wall time covers the work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(step: Step, device: torch.device) -> float:
    """Wall time of one call of `step` in milliseconds."""
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def paired_median_ms(steps: list[Step], repeats: int, device: torch.device) -> list[float]:
    """Median time of each step, after a warm-up call of each.

    The steps are timed in alternation, so load from other processes drifting over the run
    affects a loss and its floor alike and their ratio stays meaningful.
    """
    for step in steps:
        step()
    times = [[timed_ms(step, device) for step in steps] for _ in range(repeats)]
    return [statistics.median(column) for column in zip(*times, strict=True)]


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Hide the profiler's C++ start/stop log lines, which bypass Python's sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_bytes(step: Step) -> int:
    """Peak bytes held by tensors during `step`, beyond those alive before it.

    The profiler with profile_memory=True records every allocation and free made through
    PyTorch's CPU allocator, temporaries inside kernels included; replaying them in time order
    gives the live-tensor high-water mark, the CPU analogue of torch.cuda.max_memory_allocated.
    RSS (ru_maxrss) is not used: glibc keeps freed blocks resident, so in one process it misses
    reused memory, and a fresh process per measurement would cost more than the benchmark.
    """
    with stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        step()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in p.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def peak_mib(step: Step, device: torch.device) -> float:
    """Peak memory `step` allocates on top of what was allocated before it, in MiB."""
    if device.type != "cuda":
        return cpu_peak_bytes(step) / MIB
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MIB
