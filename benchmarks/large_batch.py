"""Peak memory and time of nt_xent and dcl at large batches: dense, chunked, and lightly's.

Usage: python -m benchmarks.large_batch [--sizes 4096,16384,65536] [--dim 128] [--chunk 256]
[--repeats 5] [--memory-limit-gib 8] [--device cpu] [--threads T]. Per loss and per-view batch
N, forward+backward with respect to both views of: ours dense (`chunk_size=None`, keeps the
N×N softmax), ours chunked (`chunk_size=k`, blocks of k rows recomputed in the backward), and
lightly 1.6.0's class (NTXentLoss; for dcl, its DCLLoss is the symmetric form, so the dcl rows
compare our dcl_symmetric). A candidate whose peak, extrapolated from the smallest N
(quadratically for dense, linearly for chunked; for dense at least the 2N×2N float32 logits),
would pass --memory-limit-gib is not run and its row says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import contrastkit.losses as L
from benchmarks.losses import step_of, two_views
from benchmarks.measure import MIB, paired_median_ms, peak_mib, prepare

LossFn = Callable[[Tensor, Tensor], Tensor]
GIB = 2**30


@dataclass(frozen=True)
class Candidate:
    """One way to compute a loss, and how its memory grows with N (2: quadratic, 1: linear)."""

    label: str
    fn: LossFn
    growth: int


def candidates(loss: str, chunk: int) -> list[Candidate]:
    """Ours dense and chunked, and lightly's class when installed."""
    ours = {"nt_xent": L.nt_xent, "dcl": L.dcl_symmetric}[loss]
    found = [
        Candidate("ours dense", ours, 2),
        Candidate(f"ours chunk_size={chunk}", lambda a, b: ours(a, b, chunk_size=chunk), 1),
    ]
    try:
        from lightly import loss as peer
    except ImportError:
        return found
    lightly_fn = peer.NTXentLoss(temperature=0.5) if loss == "nt_xent" else peer.DCLLoss(0.1)
    return [*found, Candidate("lightly 1.6.0", lightly_fn, 2)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096,16384,65536", help="per-view batch sizes N")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension D")
    parser.add_argument("--chunk", type=int, default=256, help="chunk_size of the chunked rows")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--memory-limit-gib", type=float, default=8.0, help="skip larger runs")
    parser.add_argument("--losses", default="nt_xent,dcl", help="nt_xent and/or dcl")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    args.device = torch.device(args.device)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prepare(args.threads)
    print(
        f"float32, D={args.dim}, device={args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} after a warm-up\n"
    )
    print("| loss | N | candidate | fwd+bwd ms | peak MiB | vs dense time | vs dense memory |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for loss in args.losses.split(","):
        first_peak: dict[str, float] = {}
        for n in args.sizes:
            runnable, skipped = [], []
            for c in candidates(loss, args.chunk):
                estimate = first_peak.get(c.label, 0.0) * (n / args.sizes[0]) ** c.growth
                if c.growth == 2:  # at least the float32 2N×2N logits, before any measurement
                    estimate = max(estimate, (2 * n) ** 2 * 4 / MIB)
                if estimate * MIB > args.memory_limit_gib * GIB:
                    skipped.append((c, estimate))
                else:
                    runnable.append(c)
            steps = [step_of(c.fn, two_views(n, args.dim, args.device)) for c in runnable]
            times = paired_median_ms(steps, args.repeats, args.device)
            peaks = [peak_mib(step, args.device) for step in steps]
            del steps
            dense = dict(
                zip([c.label for c in runnable], zip(times, peaks, strict=True), strict=True)
            )
            for c, ms, mib in zip(runnable, times, peaks, strict=True):
                first_peak.setdefault(c.label, mib)
                ratios = ["—", "—"]
                if "ours dense" in dense and c.label != "ours dense":
                    base_ms, base_mib = dense["ours dense"]
                    ratios = [f"{ms / base_ms:.2f}", f"{mib / base_mib:.3f}"]
                print(f"| {loss} | {n} | {c.label} | {ms:.1f} | {mib:.1f} | {' | '.join(ratios)} |")
            for c, estimate in skipped:
                print(
                    f"| {loss} | {n} | {c.label} | not run | ≈{estimate / 1024:.0f} GiB "
                    f"(estimated) | — | — |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
