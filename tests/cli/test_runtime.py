"""The CLI chooses OpenMP waiting from the CPUs' load at start and at most one torch thread per
usable CPU before torch loads, and leaves either setting alone when the user made it. Observed
in a fresh interpreter, since OpenMP reads its environment once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from contrastkit.runtime import BUSY_THRESHOLD, busy_cpus_of_others, usable_cpus, wait_policy_for

SRC = str(Path(__file__).resolve().parents[2] / "src")
CLI_CHOICE = "import contrastkit.cli as cli; cli.configure_openmp()"  # what main() runs first
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


def _policy(code: str) -> str:
    """OMP_WAIT_POLICY as a fresh interpreter running `code` leaves it (without loading torch)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    report = "import os; print(os.environ.get('OMP_WAIT_POLICY'))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; {report}"],
        env={**clean, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def _one_cpu() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _loaded(busy: float) -> str:
    """Child code that imports the CLI as if other processes kept `busy` CPUs busy."""
    return (
        f"import contrastkit.runtime as r; r.busy_cpus_of_others = lambda: {busy!r}; {CLI_CHOICE}"
    )


def test_importing_the_cli_loads_no_torch() -> None:
    code = "import sys; import contrastkit.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC}, check=True)


def test_the_cli_waits_passively_beside_load_and_keeps_the_default_when_idle() -> None:
    default_threads, default_policy, _ = _child("pass", {})
    threads, loaded_policy, omp_threads = _child(_loaded(BUSY_THRESHOLD), {})
    assert (default_policy, loaded_policy) == ("None", "PASSIVE")
    assert _policy(_loaded(BUSY_THRESHOLD / 2)) == "None"
    assert _policy(_loaded(None)) == "PASSIVE"  # no load reading: safe beside load
    assert threads == default_threads
    restricted = usable_cpus() < (os.cpu_count() or 1)
    assert omp_threads == (str(usable_cpus()) if restricted else "None")


def test_with_torch_already_loaded_the_load_is_not_sampled() -> None:
    # OpenMP read its environment when torch loaded: a sample then would cost 0.2 s for nothing.
    assert _policy(_loaded(1.0)) == "PASSIVE"
    assert _policy(f"import torch; {_loaded(1.0)}") == "None"


def test_the_wait_policy_threshold() -> None:
    assert wait_policy_for(0.0) is None
    assert wait_policy_for(BUSY_THRESHOLD - 0.01) is None
    assert wait_policy_for(BUSY_THRESHOLD) == "PASSIVE"
    assert wait_policy_for(None) == "PASSIVE"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_the_load_sample_sees_a_busy_process_on_the_same_cpu() -> None:
    # A spinning process pinned to one CPU; the sample, pinned there too, reads /proc/stat for
    # that CPU only, so it must count nearly the whole CPU as busy.
    cpu = min(os.sched_getaffinity(0))
    spinner = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"],
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})
        busy = busy_cpus_of_others(seconds=0.5)
    finally:
        os.sched_setaffinity(0, mask)
        spinner.kill()
        spinner.wait()
    assert busy is not None and 0.8 <= busy <= 1.0 + 1e-9


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_on_one_usable_cpu_the_cli_runs_one_torch_thread() -> None:
    # One thread for torch and for every other OpenMP pool (scikit-learn's, in evaluation).
    assert _child(_loaded(1.0), {}, preexec=_one_cpu) == (1, "PASSIVE", "1")


def test_a_user_set_thread_count_and_wait_policy_are_kept() -> None:
    user = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    # torch's own reading of the user's values (it caps the thread count at the usable CPUs)
    assert _child(CLI_CHOICE, user) == _child("pass", user)
    if hasattr(os, "sched_setaffinity"):
        expected = _child("pass", user, preexec=_one_cpu)
        assert _child(CLI_CHOICE, user, preexec=_one_cpu) == expected
        assert expected[1:] == ("ACTIVE", "3")


def test_main_chooses_before_the_command_runs_and_not_for_help(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from contrastkit import cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "configure_openmp", lambda: calls.append("openmp"))
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert calls == []  # --help answers at once, without the 0.2 s load sample
    parser = cli.build_parser
    monkeypatch.setattr(
        cli,
        "build_parser",
        lambda: _recording(parser(), calls),
    )
    assert cli.main(["prepare", "/nonexistent-folder", "--check"]) != 0
    assert calls[:2] == ["openmp", "run"]


def _recording(parser, calls: list[str]):
    """`parser` whose parsed command records that it ran (after whatever ran before it)."""
    parse = parser.parse_args

    def parse_args(argv):
        args = parse(argv)
        run = args.run
        args.run = lambda a: (calls.append("run"), run(a))[1]
        return args

    parser.parse_args = parse_args
    return parser
