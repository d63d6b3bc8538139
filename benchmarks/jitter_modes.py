"""Colour-jitter modes on CIFAR-10: kNN accuracy after a short SimCLR pretrain per mode, the
modes' per-pixel agreement with torchvision's ColorJitter, and their augmentation speed.

Usage: python -m benchmarks.jitter_modes [--data-dir ../shared/data/cifar10] [--per-class 500]
[--test-per-class 200] [--epochs 6] [--seeds 0,1] [--threads 2]. Trains on the first
`per-class` images of each class of the first 90% of the training split and tests kNN (k 200,
τ 0.1, backbone features) on the first `test-per-class` of the held-out last 10%. Each seed runs
both modes, alternating which goes first; everything else (recipe: simclr defaults, small-cnn,
SGD, batch 256) is the same.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks.measure import prepare
from contrastkit.data import holdout_split, load_dataset
from contrastkit.data.augment import colour_affine, torchvision_jitter
from contrastkit.data.presets import DataRecipe
from contrastkit.eval.knn import knn_classify
from contrastkit.train.config import build_config
from contrastkit.train.factory import method_from_config

MODES = ("torchvision", "linear")
BATCH = 256


def first_per_class(labels: torch.Tensor, indices: torch.Tensor, n: int) -> torch.Tensor:
    """The first `n` of `indices` of each class, in order."""
    chosen = [indices[labels[indices] == c][:n] for c in labels.unique()]
    return torch.cat(chosen)


def pretrain(images: torch.Tensor, mode: str, epochs: int, seed: int) -> tuple[object, float]:
    """A small-cnn SimCLR encoder trained with `mode` jitter, and the augmentation seconds."""
    torch.manual_seed(seed)
    config = build_config([{"dataset": "cifar10", "augment": {"jitter_mode": mode}}])
    method = method_from_config(config, 32, 3, 10)
    augment = DataRecipe("cifar10", 32, 3).augmentation(config.augment)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    augment_s = 0.0
    method.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order) - BATCH + 1, BATCH):
            batch = images[order[start : start + BATCH]]
            began = time.perf_counter()
            views = augment(batch, generator)
            augment_s += time.perf_counter() - began
            loss = method(views).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return method.backbone.eval(), augment_s


@torch.no_grad()
def knn_top1(backbone, train: tuple, test: tuple) -> float:
    recipe = DataRecipe("cifar10", 32, 3)

    def features(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([backbone(recipe.normalize(b)) for b in images.split(512)])

    scores = knn_classify(features(train[0]), train[1], features(test[0]), num_classes=10)
    return (scores.argmax(1) == test[1]).float().mean().item()


def agreement(images: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Per mode: the fraction of pixels within 1/255 of torchvision's ColorJitter(0.4, 0.4, 0.4,
    0.1) given the same parameters, and the largest difference."""
    from torchvision.transforms import ColorJitter
    from torchvision.transforms import functional as TF

    torch.manual_seed(0)
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1)
    ranges = (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
    params = [ColorJitter.get_params(*ranges) for _ in images]
    adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    expected = []
    for image, (order, *factors) in zip(images, params, strict=True):
        for op in order.tolist():
            image = adjust[op](image, factors[op])
        expected.append(image)
    reference = torch.stack(expected)
    factors = torch.tensor([p[1:4] for p in params])
    hue = torch.tensor([p[4] for p in params])
    order = torch.stack([p[0] for p in params])
    gray = torch.zeros(len(images), dtype=torch.bool)
    matrix, offset = colour_affine(images.mean(dim=(2, 3)), factors, hue, order, gray)
    flat = torch.bmm(matrix, images.flatten(2)) + offset.unsqueeze(2)
    outputs = {
        "torchvision": torchvision_jitter(images.clone(), factors, hue, order, gray),
        "linear": flat.clamp(0, 1).view_as(images),
    }
    out = {}
    for mode, result in outputs.items():
        diff = (result - reference).abs()
        out[mode] = ((diff <= 1 / 255).float().mean().item(), diff.max().item())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/cifar10")
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not Path(args.data_dir, "train").is_dir():
        parser.error(f"no CIFAR-10 folder at {args.data_dir} (needs train/<class>/*.jpg)")
    prepare(args.threads)

    data = load_dataset("imagefolder", "train", args.data_dir)
    keep, held = holdout_split(data.labels, 0.1)
    train_idx = first_per_class(data.labels, keep, args.per_class)
    test_idx = first_per_class(data.labels, held, args.test_per_class)
    train = (data.images[train_idx], data.labels[train_idx])
    test = (data.images[test_idx], data.labels[test_idx])
    print(
        f"CIFAR-10 folder: pretrain + kNN bank {len(train_idx)} images, kNN test {len(test_idx)}"
        f" (held-out last 10%); small-cnn SimCLR, {args.epochs} epochs, batch {BATCH}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for mode, (close, worst) in agreement(test[0][:500].float() / 255).items():
        print(f"{mode} vs torchvision ColorJitter: {close:.2%} of pixels in 1/255, max {worst:.3f}")

    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    for seed in (int(s) for s in args.seeds.split(",")):
        for mode in MODES if seed % 2 == 0 else MODES[::-1]:
            began = time.perf_counter()
            backbone, augment_s = pretrain(train[0], mode, args.epochs, seed)
            top1 = knn_top1(backbone, train, test)
            results[mode].append((top1, augment_s))
            total = time.perf_counter() - began
            print(
                f"seed {seed} {mode}: kNN top-1 {top1:.4f}, augment {augment_s:.1f}/{total:.0f} s"
            )
    print("| mode | kNN top-1 per seed | mean | augmentation s (mean) |")
    print("|---|---|---:|---:|")
    for mode, rows in results.items():
        accs = [a for a, _ in rows]
        seconds = statistics.mean(s for _, s in rows)
        shown = ", ".join(f"{a:.4f}" for a in accs)
        print(f"| {mode} | {shown} | {statistics.mean(accs):.4f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
