"""Host memory that freed tensors leave for the next step, instead of returning it to the OS.

glibc serves every allocation above 32 MiB (and, until its threshold adapts, above 128 KiB) with
a fresh mmap and unmaps it on free. A CPU training step of the small CNN at 32 px, batch 256,
allocates and frees a few hundred MiB of activations and gradients this way, so every step
page-faults all of it back in and the kernel zeroes it again: 35,000-50,000 page faults a step,
measured. Serving them from the heap and never trimming it lets the next step reuse the same
memory (0-3,000 faults a step; 0.83x the step time, benchmarks/step_speedups.py). The process
keeps its peak host memory, which a training step reaches again every step anyway, plus what
glibc's fragments add (peak RSS 1238 MiB against 1132 MiB there).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # bytes of free heap top kept before trimming (an int's maximum)


def keep_freed_host_memory() -> bool:
    """Serve large host allocations from the heap and never give freed memory back, so each
    training step reuses the memory of the last; whether it applied (glibc on Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False  # musl and other C libraries do not take these parameters
    no_mmap = libc.mallopt(_M_MMAP_MAX, 0) == 1
    no_trim = libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    return no_mmap and no_trim
