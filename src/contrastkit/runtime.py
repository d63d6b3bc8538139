"""OpenMP settings for a CPU shared with other work, chosen before torch loads.

OpenMP reads its environment once, when torch loads its OpenMP runtime, so these must be set
first. With libgomp's default spin-waiting, an idle torch thread keeps its core busy for a
while; beside another busy process a digits pretrain ran 3.5x slower than alone instead of
the fair 2x (1.9x with passive waiting). On an idle machine, though, passive waiting made the
same small steps about 1.9x slower (each parallel region wakes sleeping threads). So the
policy follows the CPUs' load when the command starts: passive when other processes keep at
least half a usable CPU busy, libgomp's default otherwise.

More threads than usable CPUs oversubscribe them: torch 2.14 already sizes its own pool from
the affinity mask, but the other OpenMP and BLAS pools in the process (scikit-learn's kNN and
logistic regression in evaluation) and older torch versions count the machine's cores, so a
restricted process states its CPU count in OMP_NUM_THREADS for all of them.
"""

from __future__ import annotations

import os
import sys
import time

WAIT_POLICY = "OMP_WAIT_POLICY"
NUM_THREADS = "OMP_NUM_THREADS"
BUSY_THRESHOLD = 0.5
"""CPUs' worth of other processes' work at start from which waiting is passive."""
SAMPLE_SECONDS = 0.2
"""How long the start-up load sample lasts (/proc/stat counts in 10 ms ticks)."""


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) ticks summed over `cpus` from /proc/stat, or None where it is unreadable."""
    try:
        with open("/proc/stat") as stat:
            lines = stat.read().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        ticks = [
            int(value) for value in fields[:8]
        ]  # user nice system idle iowait irq softirq steal
        busy += sum(ticks) - ticks[3] - ticks[4]
        total += sum(ticks)
    return busy, total


def busy_cpus_of_others(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many usable CPUs other processes keep busy, sampled over `seconds` while this process
    sleeps (Linux /proc/stat); the 1-minute load average elsewhere; None if neither exists."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    before = _cpu_times(cpus)
    if before is not None:
        time.sleep(seconds)
        after = _cpu_times(cpus)
        if after is not None and after[1] > before[1]:
            share = (after[0] - before[0]) / (after[1] - before[1])
            return share * len(cpus)
    if hasattr(os, "getloadavg"):
        return min(os.getloadavg()[0], float(usable_cpus()))
    return None


def wait_policy_for(busy_cpus: float | None) -> str | None:
    """PASSIVE when other work keeps at least `BUSY_THRESHOLD` CPUs busy (or the load cannot be
    read); None, libgomp's default, on an idle machine."""
    if busy_cpus is None or busy_cpus >= BUSY_THRESHOLD:
        return "PASSIVE"
    return None


def waits_passively() -> bool:
    """Whether OpenMP's threads sleep between parallel regions (OMP_WAIT_POLICY=PASSIVE)."""
    return os.environ.get(WAIT_POLICY, "").strip().upper() == "PASSIVE"


def configure_openmp() -> None:
    """A wait policy from the load at start, and at most one thread per usable CPU, unless the
    user set either. Once torch is loaded its OpenMP runtime has read the policy, so the load is
    not sampled then (``main`` called in-process: tests, notebooks), saving its 0.2 s."""
    env = os.environ
    if WAIT_POLICY not in env and "torch" not in sys.modules:
        policy = wait_policy_for(busy_cpus_of_others())
        if policy is not None:
            env[WAIT_POLICY] = policy
    cpus = usable_cpus()
    if NUM_THREADS not in env and cpus < (os.cpu_count() or cpus):
        # Only when restricted: otherwise every pool's own default (the cores) is fine.
        env[NUM_THREADS] = str(cpus)
