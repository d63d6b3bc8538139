"""Forward+backward time and peak memory of every loss, against lightly and against the floor.

Usage: python -m benchmarks.losses [--sizes 256,1024,4096] [--dim 128] [--repeats 5]
[--device cpu] [--threads T]. Prints a markdown table: per loss and batch size N, the median
wall time of forward+backward of ours, of lightly's class for the same loss where lightly has one
(`pip install -e ".[bench]"`), and of the loss's "floor" (the bare matrix products it cannot
avoid, forward and backward, with the same FLOPs); the peak memory of ours and lightly's; and the
ratios. The three are timed in alternation in one process, so load from other processes drifting
over the run affects them alike. The |Δ loss| column checks that both compute the same value.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import contrastkit.losses as L
from benchmarks.measure import Step, paired_median_ms, peak_mib, prepare

LossFn = Callable[..., Tensor]
Inputs = Callable[[int, int, torch.device], tuple[Tensor, ...]]  # (N, D, device) -> inputs
Factory = Callable[[int, int, torch.device], Step]  # (N, D, device) -> step on fresh inputs
Shapes = Callable[[int, int], list[tuple[int, int, int]]]  # (N, D) -> matmuls (m, k, n)


def leaf(*shape: int, device: torch.device) -> Tensor:
    """A random float32 input that requires grad, like an embedding from a network."""
    return torch.randn(*shape, device=device).requires_grad_(True)


def two_views(n: int, d: int, device: torch.device) -> tuple[Tensor, ...]:
    return leaf(n, d, device=device), leaf(n, d, device=device)


def simsiam_inputs(n: int, d: int, device: torch.device) -> tuple[Tensor, ...]:
    """Predictions p1, p2 and projections z1, z2 (the loss stops their gradient)."""
    return tuple(leaf(n, d, device=device) for _ in range(4))


def labelled_views(n: int, d: int, device: torch.device) -> tuple[Tensor, ...]:
    """Two stacked views and 100 classes (CIFAR-100-like label collisions), for SupCon."""
    return leaf(n, 2, d, device=device), torch.randint(0, 100, (n,), device=device)


def views_scale_bias(n: int, d: int, device: torch.device) -> tuple[Tensor, ...]:
    """Two views and the sigmoid loss's learnable scale and bias."""
    scale = torch.tensor(10.0, device=device, requires_grad=True)
    bias = torch.tensor(-10.0, device=device, requires_grad=True)
    return (*two_views(n, d, device), scale, bias)


GLOBAL_VIEWS, LOCAL_VIEWS = 2, 2  # DINO and SwAV: K = D prototypes, two global, two local views


def multi_crop_views(n: int, d: int, device: torch.device) -> tuple[Tensor, ...]:
    """Student outputs of every view (global first), each (N, K=D)."""
    return tuple(leaf(n, d, device=device) for _ in range(GLOBAL_VIEWS + LOCAL_VIEWS))


def prototype_scores(n: int, d: int, device: torch.device) -> tuple[Tensor, ...]:
    """Cosine scores in [-1, 1] of every view (global first) with K=D prototypes, each (N, K)."""
    return tuple(
        (torch.rand(n, d, device=device) * 2 - 1).requires_grad_(True)
        for _ in range(GLOBAL_VIEWS + LOCAL_VIEWS)
    )


def dino_inputs(n: int, d: int, device: torch.device) -> tuple[Tensor, ...]:
    """Student views, the teacher's global views (no gradient) and a zero centre."""
    teacher = tuple(torch.randn(n, d, device=device) for _ in range(GLOBAL_VIEWS))
    return (*multi_crop_views(n, d, device), *teacher, torch.zeros(d, device=device))


def dino_step(*x: Tensor) -> Tensor:
    """Our DINO loss and centre update, the work lightly's DINOLoss.forward does."""
    views = GLOBAL_VIEWS + LOCAL_VIEWS
    student, teacher, center = list(x[:views]), list(x[views:-1]), x[-1]
    L.dino_center(center, teacher)
    return L.dino(student, teacher, center)


def swav_step(*scores: Tensor) -> Tensor:
    """Sinkhorn codes of the global views, then the swapped prediction (as lightly's SwaVLoss)."""
    codes = [L.sinkhorn(s) for s in scores[:GLOBAL_VIEWS]]
    return L.swav(list(scores), codes)


def queue_inputs(n: int, d: int, device: torch.device) -> tuple[Tensor, ...]:
    """A query/key pair and a queue of 4N normalised rows (MoCo v2's queue, 16× smaller)."""
    queue = torch.nn.functional.normalize(torch.randn(4 * n, d, device=device), dim=1)
    return (*two_views(n, d, device), queue)


def step_of(fn: LossFn, inputs: tuple[Tensor, ...]) -> Step:
    """Forward+backward of `fn` with respect to every input that requires grad."""
    wrt = tuple(x for x in inputs if x.requires_grad)
    return lambda: torch.autograd.grad(fn(*inputs), wrt, allow_unused=True)


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


def view_pairs(n: int, d: int) -> list[tuple[int, int, int]]:
    """DINO's and SwAV's one product: (global views, N·K) @ (N·K, all views)."""
    return [(GLOBAL_VIEWS, n * d, GLOBAL_VIEWS + LOCAL_VIEWS)]


def similarity(rows: int, cols: int, count: int = 1) -> Shapes:
    """`count` similarity matmuls of rows·N × cols·N logits over D features."""
    return lambda n, d: [(rows * n, d, cols * n)] * count


def covariance(count: int) -> Shapes:
    """`count` D×D covariance matmuls over the batch (x.T @ x)."""
    return lambda n, d: [(d, n, d)] * count


def lightly_losses() -> dict[str, LossFn]:
    """lightly 1.6.0's class for each loss it shares with us, called like ours; {} without it."""
    try:
        from lightly import loss as peer
    except ImportError:
        return {}
    cosine = peer.NegativeCosineSimilarity()
    return {
        "nt_xent": peer.NTXentLoss(temperature=0.5),
        "dcl_symmetric": peer.DCLLoss(temperature=0.1),
        "dclw": peer.DCLWLoss(temperature=0.1, sigma=0.5),
        "vicreg": peer.VICRegLoss(),
        "barlow_twins": peer.BarlowTwinsLoss(),
        # lightly's SimSiam example: ½[cos(p0, z1.detach()) + cos(p1, z0.detach())], negated.
        "simsiam": lambda p1, p2, z1, z2: (cosine(p1, z2.detach()) + cosine(p2, z1.detach())) / 2,
        "dino": _lightly_dino(peer.DINOLoss),
        "swav": lambda *x: peer.SwaVLoss()(list(x[:GLOBAL_VIEWS]), list(x[GLOBAL_VIEWS:])),
        # BYOL's 2 − 2·cos is lightly's negative cosine, affinely: timed as lightly's BYOL example.
        "byol": lambda p, z: 2 + 2 * cosine(p, z.detach()),
        "moco": _lightly_moco(peer),
    }


def _lightly_dino(dino_loss: type) -> LossFn:
    """lightly's DINOLoss (one per K, its centre reset to our zero centre before each call:
    its forward moves the centre, ours returns the next one)."""
    modules: dict[int, torch.nn.Module] = {}

    def call(*x: Tensor) -> Tensor:
        views = GLOBAL_VIEWS + LOCAL_VIEWS
        k = x[0].shape[1]
        module = modules.setdefault(k, dino_loss(output_dim=k, warmup_teacher_temp_epochs=0))
        module.to(x[0].device).center.zero_()
        return module(list(x[views:-1]), list(x[:views]))

    return call


def _lightly_moco(peer: object) -> LossFn:
    """lightly's MoCo: NTXentLoss with a memory bank, reset to our queue's rows before each call
    (its forward enqueues the keys, which is part of its time)."""
    criteria: dict[tuple[int, ...], object] = {}

    def loss(q: Tensor, k: Tensor, queue: Tensor) -> Tensor:
        if queue.shape not in criteria:
            size = tuple(queue.shape)
            criteria[queue.shape] = peer.NTXentLoss(temperature=0.2, memory_bank_size=size)
        criterion = criteria[queue.shape].to(queue.device)
        criterion.memory_bank.bank.copy_(queue)
        criterion.memory_bank.bank_ptr.zero_()
        return criterion(q, k.detach())

    return loss


@dataclass(frozen=True)
class Bench:
    """A loss (ours), the matrix products it cannot avoid, and its inputs."""

    name: str
    ours: LossFn
    floor: Factory
    inputs: Inputs = two_views


BENCHES = [
    Bench("info_nce", L.info_nce, matmul_floor(similarity(1, 1))),
    Bench("nt_xent", L.nt_xent, matmul_floor(similarity(2, 2))),
    Bench("dcl", L.dcl, matmul_floor(similarity(1, 2))),
    Bench("dcl_symmetric", L.dcl_symmetric, matmul_floor(similarity(2, 2))),
    Bench("dclw", L.dclw, matmul_floor(similarity(2, 2))),
    Bench("dhel", L.dhel, matmul_floor(similarity(1, 1))),
    Bench("kcl", L.kcl, matmul_floor(similarity(1, 1, count=2))),
    Bench("vicreg", L.vicreg, matmul_floor(covariance(2))),
    Bench("barlow_twins", L.barlow_twins, matmul_floor(covariance(1))),
    Bench("simsiam", L.simsiam, rowdot_floor, simsiam_inputs),
    Bench("supcon", L.supcon, matmul_floor(similarity(2, 2)), labelled_views),
    Bench("sigmoid", L.sigmoid, matmul_floor(similarity(1, 1)), views_scale_bias),
    # With the KL term the loss needs logitsᵀ, which one process could take from the same matmul.
    Bench(
        "sigmoid γ=1 kl=0.5",
        lambda *x: L.sigmoid(*x, gamma=1.0, kl_weight=0.5),
        matmul_floor(similarity(1, 1)),
        views_scale_bias,
    ),
    Bench("dino", dino_step, matmul_floor(view_pairs), dino_inputs),
    Bench("swav", swav_step, matmul_floor(view_pairs), prototype_scores),
    Bench("byol", L.byol, rowdot_floor),
    Bench(
        "moco",
        lambda q, k, queue: L.moco(q, k, queue),
        matmul_floor(lambda n, d: [(n, d, 4 * n)] * 2),
        queue_inputs,
    ),
    Bench("moco_v3", L.moco_v3, matmul_floor(similarity(1, 1))),
    Bench(
        "nnclr",
        lambda z, p: L.nnclr(z, p, z),
        matmul_floor(similarity(1, 1, count=2)),
    ),
    # SIGReg's floor: projecting both views on its 256 directions.
    Bench(
        "lejepa", lambda z1, z2: L.lejepa([z1, z2], 2), matmul_floor(lambda n, d: [(2 * n, d, 256)])
    ),
    Bench(
        "uniformity",
        L.uniformity,
        matmul_floor(similarity(1, 1)),
        lambda n, d, dev: (leaf(n, d, device=dev),),
    ),
]


def table_row(
    bench: Bench, peer: LossFn | None, n: int, d: int, repeats: int, device: torch.device
) -> str:
    """One markdown row: ours, lightly's and the floor's time; memory; ratios; |Δ loss|."""
    inputs = bench.inputs(n, d, device)
    steps = [step_of(bench.ours, inputs), bench.floor(n, d, device)]
    if peer is not None:
        steps.append(step_of(peer, inputs))
    times = paired_median_ms(steps, repeats, device)
    ours_ms, floor_ms = times[0], times[1]
    ours_mib = peak_mib(steps[0], device)
    cells = [bench.name, str(n), f"{ours_ms:.2f}"]
    if peer is None:
        cells += ["—", "—", f"{ours_mib:.1f}", "—"]
    else:
        with torch.no_grad():
            delta = abs(float(bench.ours(*inputs)) - float(peer(*inputs)))
        peer_ms, peer_mib = times[2], peak_mib(steps[2], device)
        cells += [f"{peer_ms:.2f}", f"**{ours_ms / peer_ms:.2f}**", f"{ours_mib:.1f}"]
        cells += [f"{peer_mib:.1f}"]
    cells += [f"{floor_ms:.2f}", f"{ours_ms / floor_ms:.1f}"]
    cells += ["—" if peer is None else f"{delta:.1e}"]
    return "| " + " | ".join(cells) + " |"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the full run quoted in benchmarks/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024,4096", help="comma-separated batch sizes N")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension D")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--only", default="", help="comma-separated loss names (default: all)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.device = torch.device(args.device)
    args.only = set(filter(None, args.only.split(",")))
    return args


def main(argv: list[str] | None = None) -> None:
    """Print the header and one row per (loss, N), flushing as rows are measured."""
    args = parse_args(argv)
    prepare(args.threads)
    peers = lightly_losses()
    print(
        f"float32, D={args.dim}, device={args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} after a warm-up, "
        f"lightly {'1.6.0' if peers else 'not installed'}\n"
    )
    print(
        "| loss | N | ours ms | lightly ms | ours/lightly | ours MiB | lightly MiB "
        "| floor ms | ours/floor | abs Δ loss |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        for n in args.sizes:
            row = table_row(bench, peers.get(bench.name), n, args.dim, args.repeats, args.device)
            print(row, flush=True)


if __name__ == "__main__":
    main()
