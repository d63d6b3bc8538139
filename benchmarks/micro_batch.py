"""Peak memory and time of one SimCLR step with gradient caching (`--micro-batch-size M`).

Usage: python -m benchmarks.micro_batch [--batch-size 1024] [--micro 512,256,128,64]
[--backbone small-cnn] [--size 32] [--repeats 3] [--device cpu] [--threads T]. Per M, one
training step (two views → backbone and projector → nt_xent over the whole batch → backward)
as `PretrainModule` runs it: a plain step for the first row, `train.grad_cache` for the others.
The step's loss is over all B embeddings in every row; only the networks' graph shrinks to M.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.measure import Step, paired_median_ms, peak_mib, prepare
from contrastkit.train.config import build_config
from contrastkit.train.factory import method_from_config
from contrastkit.train.grad_cache import cached_forward


def make_step(args: argparse.Namespace, micro: int | None) -> Step:
    config = build_config([{"backbone": args.backbone}])
    method = method_from_config(config, args.size, 3, 1).to(args.device)
    shape = (args.batch_size, 3, args.size, args.size)
    views = [torch.randn(shape, device=args.device) for _ in range(2)]

    def step() -> None:
        method.zero_grad(set_to_none=True)
        if micro is None:
            method(views).loss.backward()
        else:
            cached_forward(method, views, None, micro).backward()

    return step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--micro", default="512,256,128,64", help="micro-batch sizes M")
    parser.add_argument("--backbone", default="small-cnn")
    parser.add_argument("--size", type=int, default=32, help="image size")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    args.micro = [int(m) for m in args.micro.split(",")]
    args.device = torch.device(args.device)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prepare(args.threads)
    sizes: list[int | None] = [None, *args.micro]
    steps = [make_step(args, m) for m in sizes]
    times = paired_median_ms(steps, args.repeats, args.device)
    peaks = [peak_mib(step, args.device) for step in steps]
    print(
        f"{args.backbone}, {args.size} px, batch {args.batch_size} × 2 views, simclr/nt_xent, "
        f"float32, device={args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} alternating runs\n"
    )
    print("| micro-batch M | step ms | peak MiB | vs plain time | vs plain memory |")
    print("|---|---:|---:|---:|---:|")
    for m, ms, mib in zip(sizes, times, peaks, strict=True):
        label = "plain step (M = B)" if m is None else str(m)
        print(f"| {label} | {ms:.0f} | {mib:.0f} | {ms / times[0]:.2f} | {mib / peaks[0]:.2f} |")


if __name__ == "__main__":
    main()
