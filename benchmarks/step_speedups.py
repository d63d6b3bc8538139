"""Candidate speed-ups of our CPU training step, each timed against the default step in one run.

The step is `contrastkit pretrain`'s SimCLR step without Lightning: a uint8 batch, `BatchAugment`
to two views, `Method` (small CNN, projector, NT-Xent), backward and SGD. Candidates:

* default: channels-last, one backbone pass per view, torch's thread count, and glibc's
  allocator as it settles by itself (its mmap threshold grown to its 32 MiB maximum);
* host memory kept: large allocations served from the heap, never trimmed
  (`contrastkit.train.heap.keep_freed_host_memory`, a process-wide setting toggled per run);
* NCHW: the contiguous memory format instead of channels-last;
* views in one batch: both views through the backbone together (`views_in_one_batch`,
  which changes batch-norm statistics, so not a free switch);
* one torch thread: `torch.set_num_threads(1)` for the run, restored after it;
* torch.compile: the backbone compiled by inductor (its compile seconds shown apart).

Every candidate but the first also keeps host memory, so each row adds one change to the
kept-memory row. Each candidate starts from the same weights; runs of `--steps` steps (after one
untimed step that settles the allocator after the last candidate's) alternate across candidates
`--repeats` times. Each row shows the median wall time of a step, its ratio to the default, the
process's CPU time per step (user + system; the kernel's page-fault handling and zeroing count
as system time) and its minor page faults per step. Usage: python -m benchmarks.step_speedups
[--batch-size 256] [--steps 3] [--repeats 5] [--no-compile] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks.measure import glibc_settled_allocator, prepare
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

    kept = keep_freed_host_memory
    found = [
        Candidate("default", built(), glibc_settled_allocator),
        Candidate("host memory kept", built(), kept),
        Candidate("host memory kept, NCHW", built(channels_last=False), kept),
        Candidate("host memory kept, views in one batch", built(one_batch=True), kept),
        Candidate(
            "host memory kept, 1 torch thread",
            built(),
            lambda: (kept(), torch.set_num_threads(1)),
            lambda: torch.set_num_threads(threads),
        ),
    ]
    if not args.no_compile:
        found.append(Candidate("host memory kept, torch.compile", built(compiled=True), kept))
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
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prepare(args.threads)
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
            candidate.step()  # settles the allocator after the previous candidate's setting
            start = Usage.now()
            for _ in range(args.steps):
                candidate.step()
            usage[candidate.name].append(Usage.now().per_step_since(start, args.steps))
            candidate.undo()
    print(
        f"small-cnn, 32 px, batch {args.batch_size} (2 views), SimCLR nt_xent, SGD, float32, "
        f"cpu, torch {torch.__version__}, {torch.get_num_threads()} threads, median of "
        f"{args.repeats} alternating runs of {args.steps} steps\n"
    )
    print(
        "| candidate | ms/step | runs (ms/step) | vs default | CPU ms/step (system) "
        "| page faults/step | first step s |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    reference = statistics.median(u.wall for u in usage["default"])
    for candidate in found:
        runs = usage[candidate.name]
        wall = statistics.median(u.wall for u in runs)
        cpu = statistics.median(u.user + u.system for u in runs)
        system = statistics.median(u.system for u in runs)
        faults = statistics.median(u.faults for u in runs)
        shown = ", ".join(f"{1e3 * u.wall:.0f}" for u in runs)
        print(
            f"| {candidate.name} | {1e3 * wall:.0f} | {shown} | **{wall / reference:.2f}×** | "
            f"{1e3 * cpu:.0f} ({1e3 * system:.0f}) | {faults:,.0f} | {candidate.first_s:.1f} |"
        )


if __name__ == "__main__":
    main()
