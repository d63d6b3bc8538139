"""The CLI chooses passive OpenMP waiting and at most one torch thread per usable CPU before
torch loads, and leaves either setting alone when the user made it. Observed in a fresh
interpreter, since OpenMP reads its environment once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from contrastkit.runtime import usable_cpus

SRC = str(Path(__file__).resolve().parents[2] / "src")
REPORT = (
    "import os, torch; e = os.environ.get; "
    "print(torch.get_num_threads(), e('OMP_WAIT_POLICY'), e('OMP_NUM_THREADS'))"
)


def _child(
    code: str, env: dict[str, str], preexec: Callable[[], None] | None = None
) -> tuple[int, str, str]:
    """(torch threads, OMP_WAIT_POLICY, OMP_NUM_THREADS) as a fresh interpreter running `code`
    reports them ("None" where unset)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    clean["PYTHONPATH"] = SRC
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; {REPORT}"],
        env={**clean, **env},
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    threads, policy, omp_threads = done.stdout.split()
    return int(threads), policy, omp_threads


def _one_cpu() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def test_importing_the_cli_loads_no_torch() -> None:
    code = "import sys; import contrastkit.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC}, check=True)


def test_the_cli_chooses_passive_waiting_and_torchs_thread_count_when_unrestricted() -> None:
    default_threads, default_policy, _ = _child("pass", {})
    threads, policy, omp_threads = _child("import contrastkit.cli", {})
    assert (default_policy, policy) == ("None", "PASSIVE")
    assert threads == default_threads
    restricted = usable_cpus() < (os.cpu_count() or 1)
    assert omp_threads == (str(usable_cpus()) if restricted else "None")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_on_one_usable_cpu_the_cli_runs_one_torch_thread() -> None:
    # One thread for torch and for every other OpenMP pool (scikit-learn's, in evaluation).
    assert _child("import contrastkit.cli", {}, preexec=_one_cpu) == (1, "PASSIVE", "1")


def test_a_user_set_thread_count_and_wait_policy_are_kept() -> None:
    user = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    # torch's own reading of the user's values (it caps the thread count at the usable CPUs)
    assert _child("import contrastkit.cli", user) == _child("pass", user)
    if hasattr(os, "sched_setaffinity"):
        expected = _child("pass", user, preexec=_one_cpu)
        assert _child("import contrastkit.cli", user, preexec=_one_cpu) == expected
        assert expected[1:] == ("ACTIVE", "3")
