"""Seconds of `contrastkit pretrain` on digits alone and beside another training job.

A user's CPU is rarely idle: a browser, a second run, CI beside a session. This times the
command as a user types it (a fresh process; start-up included), alone and beside one busy
two-thread process (another `contrastkit pretrain`, started first and stopped after), under
three OpenMP wait policies, each used by the measured run and the load alike:

* before: libgomp's default (spin a while, then sleep), as the CLI ran before it chose one; the
  CLI's choice is switched off by a wrapper;
* passive: always passive (`OMP_WAIT_POLICY=PASSIVE`, as the user would set it);
* from the load: what the CLI chooses when the user sets nothing: passive when other processes
  keep half a CPU busy at start, else libgomp's default. The load, started on an idle machine,
  keeps the default; the measured run started beside it waits passively.

Runs alternate (each policy alone, then beside load, then the next policy; repeat), so load from
elsewhere drifting over the benchmark affects all alike. The target: beside load at most 2.5x
slower than alone (a fair share of 2 cores is 2x), and alone no slower than before.
Usage: python -m benchmarks.shared_cpu [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
# The CLI with its OpenMP choice switched off: what `contrastkit` did before it made one.
BEFORE = (
    "import sys, contrastkit.runtime as r; r.configure_openmp = lambda: None; "
    "from contrastkit.cli import main; sys.exit(main())"
)
NOW = "import sys; from contrastkit.cli import main; sys.exit(main())"
# (entry, environment) of each policy; the CLI keeps a policy the user set.
POLICIES: dict[str, tuple[str, dict[str, str]]] = {
    "before (libgomp default)": (BEFORE, {}),
    "passive": (NOW, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "from the load (CLI default now)": (NOW, {}),
}


def _command(entry: str, epochs: int, out: Path) -> list[str]:
    quiet = ["--loggers", "csv", "--progress", "false", "--out", str(out)]
    return [sys.executable, "-c", entry, "pretrain", "--epochs", str(epochs), *quiet]


def _environment() -> dict[str, str]:
    """The caller's environment without OpenMP settings, so the CLI (or libgomp) chooses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def timed_run(policy: tuple[str, dict[str, str]], epochs: int, folder: Path) -> float:
    """Wall seconds of one pretrain command, in a fresh output folder."""
    entry, env = policy
    out = Path(tempfile.mkdtemp(dir=folder))
    start = time.perf_counter()
    subprocess.run(
        _command(entry, epochs, out),
        env={**_environment(), **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def beside_load(
    policy: tuple[str, dict[str, str]], epochs: int, folder: Path, warmup_s: float
) -> float:
    """Seconds of one run while a second, two-thread training job (same policy) is busy."""
    entry, policy_env = policy
    out = Path(tempfile.mkdtemp(dir=folder))
    env = {**_environment(), **policy_env, "OMP_NUM_THREADS": "2"}
    load = subprocess.Popen(
        _command(entry, 10_000, out),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(warmup_s)  # past its imports and data loading, into training
        if load.poll() is not None:
            raise RuntimeError(f"the load process ended early (exit {load.returncode})")
        return timed_run(policy, epochs, folder)
    finally:
        load.terminate()
        load.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each measured run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each case, alternating")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds the load runs first")
    args = parser.parse_args(argv)
    seconds: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for policy, setting in POLICIES.items():
                alone = timed_run(setting, args.epochs, Path(folder))
                beside = beside_load(setting, args.epochs, Path(folder), args.warmup)
                seconds.setdefault((policy, "alone"), []).append(alone)
                seconds.setdefault((policy, "beside"), []).append(beside)
                print(f"{policy}: alone {alone:.1f} s, beside load {beside:.1f} s", flush=True)
    print(
        f"\n`contrastkit pretrain --epochs {args.epochs}` (digits, small-cnn, batch 256), whole "
        f"command; {os.cpu_count()} CPUs; median of {args.repeats} alternating runs; load: "
        "a second pretrain with OMP_NUM_THREADS=2 and the same policy\n"
    )
    print("| OpenMP wait policy | alone s | beside load s | slowdown | runs (alone / beside) |")
    print("|---|---:|---:|---:|---|")
    for policy in POLICIES:
        alone, beside = seconds[policy, "alone"], seconds[policy, "beside"]
        runs = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(alone, beside, strict=True))
        a, b = statistics.median(alone), statistics.median(beside)
        print(f"| {policy} | {a:.1f} | {b:.1f} | **{b / a:.2f}×** | {runs} |")
    before, passive, now = (statistics.median(seconds[p, "alone"]) for p in POLICIES)
    print(f"\nalone, passive / before: {passive / before:.2f}×; from the load / before: ", end="")
    print(f"{now / before:.2f}×")


if __name__ == "__main__":
    main()
