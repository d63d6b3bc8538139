"""OpenMP settings for a CPU shared with other work, chosen before torch loads.

OpenMP reads its environment once, when torch loads its OpenMP runtime, so these must be set
first. With libgomp's default spin-waiting, an idle torch thread keeps its core busy for a
while; beside another busy process a digits pretrain ran 3.5x slower than alone instead of
the fair 2x (1.9x with passive waiting). More threads than usable CPUs oversubscribe them:
torch 2.14 already sizes its own pool from the affinity mask, but the other OpenMP and BLAS
pools in the process (scikit-learn's kNN and logistic regression in evaluation) and older
torch versions count the machine's cores, so a restricted process states its CPU count in
OMP_NUM_THREADS for all of them.
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"
NUM_THREADS = "OMP_NUM_THREADS"


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configure_openmp() -> None:
    """Passive waiting, and at most one thread per usable CPU, unless the user set either."""
    env = os.environ
    env.setdefault(WAIT_POLICY, "PASSIVE")
    cpus = usable_cpus()
    if NUM_THREADS not in env and cpus < (os.cpu_count() or cpus):
        # Only when restricted: otherwise every pool's own default (the cores) is fine.
        env[NUM_THREADS] = str(cpus)
