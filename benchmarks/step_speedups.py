"""Candidate speed-ups of our CPU training step, each timed against the default step.

The step is `contrastkit pretrain`'s SimCLR step without Lightning: a uint8 batch, `BatchAugment`
to two views, `Method` (small CNN, projector, NT-Xent), backward and SGD, at 32 px.

Host memory kept (`contrastkit.train.heap.keep_freed_host_memory`, process-wide and not undone:
free heap left by it keeps serving a process after glibc's settings are restored) is compared in
fresh processes, one with glibc's allocator untouched and one keeping freed memory, alternating
`--processes` times; each times `--steps` steps after 2 warm-up steps.

The other candidates run in one process that keeps host memory, each from the same weights,
runs of `--steps` steps (after one untimed step) alternating `--repeats` times:
* default: channels-last, one backbone pass per view, torch's thread count;
* NCHW: the contiguous memory format instead of channels-last;
* views in one batch: both views through the backbone together (`views_in_one_batch`,
  which changes batch-norm statistics, so not a free switch);
* one torch thread: `torch.set_num_threads(1)` for the run, restored after it;
* torch.compile: the backbone compiled by inductor (its compile seconds shown apart).

Each row shows the median wall time of a step, its ratio to the first row, the process's CPU
time per step (user + system; the kernel's page-fault handling and zeroing count as system
time) and its minor page faults per step. Usage: python -m benchmarks.step_speedups
[--batch-size 256] [--steps 3] [--repeats 5] [--processes 5] [--no-compile] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from benchmarks.measure import MIB, prepare
from contrastkit.data.datasets import InMemoryImages
from contrastkit.data.presets import DataRecipe
from contrastkit.methods import Method
from contrastkit.train.config import build_config
from contrastkit.train.data import PretrainData
from contrastkit.train.factory import method_from_config
from contrastkit.train.heap import keep_freed_host_memory


@dataclass
class Candidate:
    """A way to run our step: its setup before each timed run and its undo after it."""

    name: str
    step: Callable[[], None]
    setup: Callable[[], None]
    undo: Callable[[], None] = lambda: None
    first_s: float = 0.0  # the first call (torch.compile compiles in it)


def make_step(
    method: Method, data: PretrainData, batch: torch.Tensor, channels_last: bool
) -> Callable[[], None]:
    """One training step as PretrainModule.training_step runs it (no Lightning, no logging)."""
    config = build_config([{"backbone": "small-cnn", "batch_size": batch.shape[0]}])
    augment = data.augmentation(config)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    method.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        views = augment(batch, generator=generator)
        views = [v.contiguous(memory_format=memory_format) for v in views]
        loss = method(views).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss")
        optimizer.step()

    return step


def candidates(args: argparse.Namespace) -> list[Candidate]:
    config = build_config([{"backbone": "small-cnn", "batch_size": args.batch_size}])
    images = torch.randint(0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8)
    labels = torch.zeros(args.batch_size, dtype=torch.int64)
    data = PretrainData(
        InMemoryImages(images, labels, ["x"]), None, 1, 3, 32, DataRecipe("cifar10", 32, 3)
    )
    initial = method_from_config(config, 32, 3, 1)
    threads = torch.get_num_threads()

    def built(channels_last: bool = True, one_batch: bool = False, compiled: bool = False):
        method = copy.deepcopy(initial)
        method.views_in_one_batch = one_batch
        if compiled:
            method.backbone.compile()
        return make_step(method, data, images, channels_last)

    def nothing() -> None:
        pass

    found = [
        Candidate("default", built(), nothing),
        Candidate("NCHW", built(channels_last=False), nothing),
        Candidate("views in one batch", built(one_batch=True), nothing),
        Candidate(
            "1 torch thread",
            built(),
            lambda: torch.set_num_threads(1),
            lambda: torch.set_num_threads(threads),
        ),
    ]
    if not args.no_compile:
        found.append(Candidate("torch.compile", built(compiled=True), nothing))
    return found


@dataclass
class Usage:
    """Wall, user and system seconds and minor page faults of this process so far."""

    wall: float
    user: float
    system: float
    faults: int

    @classmethod
    def now(cls) -> Usage:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return cls(time.perf_counter(), own.ru_utime, own.ru_stime, own.ru_minflt)

    def per_step_since(self, start: Usage, steps: int) -> Usage:
        return Usage(
            (self.wall - start.wall) / steps,
            (self.user - start.user) / steps,
            (self.system - start.system) / steps,
            round((self.faults - start.faults) / steps),
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per candidate")
    parser.add_argument("--processes", type=int, default=5, help="fresh processes per allocator")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--child", choices=ALLOCATORS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


ALLOCATORS = ("glibc", "kept")


def child(args: argparse.Namespace) -> None:
    """In a fresh process: the default step's usage per step under one allocator, as JSON."""
    if args.child == "kept":
        keep_freed_host_memory()
    prepare(args.threads)
    step = candidates(argparse.Namespace(**{**vars(args), "no_compile": True}))[0].step
    for _ in range(2):
        step()
    start = Usage.now()
    for _ in range(args.steps):
        step()
    usage = asdict(Usage.now().per_step_since(start, args.steps))
    usage["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB
    print(json.dumps(usage))


def allocator_runs(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Usage per step of fresh processes, glibc's allocator and kept memory alternating."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ALLOCATORS}
    command = [sys.executable, "-m", "benchmarks.step_speedups", "--steps", str(args.steps)]
    command += ["--batch-size", str(args.batch_size)]
    command += [] if args.threads is None else ["--threads", str(args.threads)]
    for _ in range(args.processes):
        for name in ALLOCATORS:
            done = subprocess.run(
                [*command, "--child", name], capture_output=True, text=True, check=True
            )
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


def one_process_runs(args: argparse.Namespace) -> tuple[list[Candidate], dict[str, list[Usage]]]:
    """Usage per step of each candidate, alternating in this process (host memory kept)."""
    keep_freed_host_memory()
    found = candidates(args)
    for candidate in found:  # warm-up; compiles
        candidate.setup()
        start = time.perf_counter()
        candidate.step()
        candidate.first_s = time.perf_counter() - start
        candidate.step()
        candidate.undo()
    usage: dict[str, list[Usage]] = {c.name: [] for c in found}
    for _ in range(args.repeats):
        for candidate in found:
            candidate.setup()
            candidate.step()  # untimed, so no run starts right after another candidate's
            start = Usage.now()
            for _ in range(args.steps):
                candidate.step()
            usage[candidate.name].append(Usage.now().per_step_since(start, args.steps))
            candidate.undo()
    return found, usage


def row(name: str, runs: list[dict[str, float]], reference: float, last: str) -> str:
    wall = statistics.median(r["wall"] for r in runs)
    cpu = statistics.median(r["user"] + r["system"] for r in runs)
    system = statistics.median(r["system"] for r in runs)
    faults = statistics.median(r["faults"] for r in runs)
    shown = ", ".join(f"{1e3 * r['wall']:.0f}" for r in runs)
    return (
        f"| {name} | {1e3 * wall:.0f} | {shown} | **{wall / reference:.2f}×** | "
        f"{1e3 * cpu:.0f} ({1e3 * system:.0f}) | {faults:,.0f} | {last} |"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        child(args)
        return
    prepare(args.threads)
    setup = (
        f"small-cnn, 32 px, batch {args.batch_size} (2 views), SimCLR nt_xent, SGD, float32, "
        f"cpu, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    head = (
        "| {} | ms/step | runs (ms/step) | vs {} | CPU ms/step (system) | page faults/step | {} |"
    )
    if args.processes:
        runs = allocator_runs(args)
        print(
            f"{setup}; median of {args.processes} fresh processes per allocator, alternating, "
            f"{args.steps} steps each after 2 warm-up steps\n"
        )
        print(head.format("allocator", "glibc", "peak RSS MiB"))
        print("|---|---:|---|---:|---:|---:|---:|")
        reference = statistics.median(r["wall"] for r in runs["glibc"])
        labels = {"glibc": "glibc as it is", "kept": "host memory kept"}
        for name in ALLOCATORS:
            rss = statistics.median(r["peak_rss_mib"] for r in runs[name])
            print(row(labels[name], runs[name], reference, f"{rss:.0f}"))
        print()
    found, usage = one_process_runs(args)
    print(
        f"{setup}; host memory kept; median of {args.repeats} alternating runs of {args.steps} "
        "steps\n"
    )
    print(head.format("candidate", "default", "first step s"))
    print("|---|---:|---|---:|---:|---:|---:|")
    reference = statistics.median(u.wall for u in usage["default"])
    for candidate in found:
        runs = [asdict(u) for u in usage[candidate.name]]
        print(row(candidate.name, runs, reference, f"{candidate.first_s:.1f}"))


if __name__ == "__main__":
    main()
