"""Forward+backward time and peak memory of every loss, against the matmuls it cannot avoid.

Usage: python benchmarks/losses.py [--sizes 256,1024,4096] [--dim 128] [--repeats 5]
[--device cpu] [--threads T]. Prints a markdown table: per loss and batch size N, the median
wall time of forward+backward, the peak memory it allocates, and the same for its "floor" (the
bare matrix products of the loss, forward and backward, with the same FLOPs), plus the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

import contrastkit.losses as L

Step = Callable[[], object]  # one forward+backward
Factory = Callable[[int, int, torch.device], Step]  # (N, D, device) -> step on fresh inputs
Shapes = Callable[[int, int], list[tuple[int, int, int]]]  # (N, D) -> matmuls (m, k, n)
MIB = 2**20


def leaf(*shape: int, device: torch.device) -> Tensor:
    """A random float32 input that requires grad, like an embedding from a network."""
    return torch.randn(*shape, device=device).requires_grad_(True)


def pair_loss(fn: Callable[[Tensor, Tensor], Tensor]) -> Factory:
    """Step factory for a loss over two (N, D) views, differentiated w.r.t. both."""

    def make(n: int, d: int, device: torch.device) -> Step:
        z1, z2 = leaf(n, d, device=device), leaf(n, d, device=device)
        return lambda: torch.autograd.grad(fn(z1, z2), (z1, z2))

    return make


def simsiam_loss(n: int, d: int, device: torch.device) -> Step:
    """SimSiam step: gradients reach the predictions only (the projections are stop-gradient)."""
    p1, p2, z1, z2 = (leaf(n, d, device=device) for _ in range(4))
    return lambda: torch.autograd.grad(L.simsiam(p1, p2, z1, z2), (p1, p2))


def supcon_loss(n: int, d: int, device: torch.device) -> Step:
    """SupCon step on two views with 100 classes (CIFAR-100-like label collisions)."""
    z = leaf(n, 2, d, device=device)
    labels = torch.randint(0, 100, (n,), device=device)
    return lambda: torch.autograd.grad(L.supcon(z, labels), (z,))


def sigmoid_loss(gamma: float, kl_weight: float) -> Factory:
    """Sigmoid-loss step with a learnable scale and bias, as SigmoidLoss holds them."""

    def make(n: int, d: int, device: torch.device) -> Step:
        z1, z2 = leaf(n, d, device=device), leaf(n, d, device=device)
        scale = torch.tensor(10.0, device=device, requires_grad=True)
        bias = torch.tensor(-10.0, device=device, requires_grad=True)

        def step() -> object:
            loss = L.sigmoid(z1, z2, scale, bias, gamma=gamma, kl_weight=kl_weight)
            return torch.autograd.grad(loss, (z1, z2, scale, bias))

        return step

    return make


def uniformity_loss(n: int, d: int, device: torch.device) -> Step:
    """Uniformity step on one (N, D) batch."""
    z = leaf(n, d, device=device)
    return lambda: torch.autograd.grad(L.uniformity(z), (z,))


def matmul_floor(shapes: Shapes) -> Factory:
    """Step factory for bare products A(m,k) @ B(k,n), forward and both backward matmuls."""

    def make(n: int, d: int, device: torch.device) -> Step:
        ops = [
            (leaf(m, k, device=device), leaf(k, p, device=device), torch.randn(m, p, device=device))
            for m, k, p in shapes(n, d)
        ]
        return lambda: [torch.autograd.grad(a @ b, (a, b), g) for a, b, g in ops]

    return make


def rowdot_floor(n: int, d: int, device: torch.device) -> Step:
    """SimSiam's floor: two row-wise dot products, differentiated w.r.t. the predictions."""
    p1, p2 = leaf(n, d, device=device), leaf(n, d, device=device)
    z1, z2 = torch.randn(n, d, device=device), torch.randn(n, d, device=device)
    return lambda: torch.autograd.grad((p1 * z2).sum() + (p2 * z1).sum(), (p1, p2))


def similarity(rows: int, cols: int, count: int = 1) -> Shapes:
    """`count` similarity matmuls of rows·N × cols·N logits over D features."""
    return lambda n, d: [(rows * n, d, cols * n)] * count


def covariance(count: int) -> Shapes:
    """`count` D×D covariance matmuls over the batch (x.T @ x)."""
    return lambda n, d: [(d, n, d)] * count


@dataclass(frozen=True)
class Bench:
    """A loss step and the step of the matrix products it cannot avoid."""

    name: str
    loss: Factory
    floor: Factory


BENCHES = [
    Bench("info_nce", pair_loss(L.info_nce), matmul_floor(similarity(1, 1))),
    Bench("nt_xent", pair_loss(L.nt_xent), matmul_floor(similarity(2, 2))),
    Bench("dcl", pair_loss(L.dcl), matmul_floor(similarity(1, 2))),
    Bench("dcl_symmetric", pair_loss(L.dcl_symmetric), matmul_floor(similarity(2, 2))),
    Bench("dclw", pair_loss(L.dclw), matmul_floor(similarity(2, 2))),
    Bench("dhel", pair_loss(L.dhel), matmul_floor(similarity(1, 1))),
    Bench("kcl", pair_loss(L.kcl), matmul_floor(similarity(1, 1, count=2))),
    Bench("vicreg", pair_loss(L.vicreg), matmul_floor(covariance(2))),
    Bench("barlow_twins", pair_loss(L.barlow_twins), matmul_floor(covariance(1))),
    Bench("simsiam", simsiam_loss, rowdot_floor),
    Bench("supcon", supcon_loss, matmul_floor(similarity(2, 2))),
    Bench("sigmoid", sigmoid_loss(0.0, 0.0), matmul_floor(similarity(1, 1))),
    # With the KL term the loss needs logitsᵀ, which one process could take from the same matmul.
    Bench("sigmoid γ=1 kl=0.5", sigmoid_loss(1.0, 0.5), matmul_floor(similarity(1, 1))),
    Bench("uniformity", uniformity_loss, matmul_floor(similarity(1, 1))),
]


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


def table_row(bench: Bench, n: int, d: int, repeats: int, device: torch.device) -> str:
    """One markdown row: loss time and memory, floor time and memory, time ratio."""
    steps = [bench.loss(n, d, device), bench.floor(n, d, device)]
    loss_ms, floor_ms = paired_median_ms(steps, repeats, device)
    loss_mib, floor_mib = (peak_mib(step, device) for step in steps)
    return (
        f"| {bench.name} | {n} | {loss_ms:.2f} | {loss_mib:.1f} "
        f"| {floor_ms:.2f} | {floor_mib:.1f} | {loss_ms / floor_ms:.1f} |"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the full run quoted in benchmarks/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024,4096", help="comma-separated batch sizes N")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension D")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.device = torch.device(args.device)
    return args


def main(argv: list[str] | None = None) -> None:
    """Print the header and one row per (loss, N), flushing as rows are measured."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"float32, D={args.dim}, device={args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} after a warm-up\n"
    )
    print("| loss | N | fwd+bwd ms | peak MiB | floor ms | floor MiB | × floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for bench in BENCHES:
        for n in args.sizes:
            print(table_row(bench, n, args.dim, args.repeats, args.device), flush=True)


if __name__ == "__main__":
    main()
