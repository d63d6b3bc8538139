"""kNN accuracy against training seconds: `contrastkit pretrain`'s SimCLR against a lightly loop.

Both train SimCLR (NT-Xent, temperature 0.5) on CIFAR-10's training folder with the last 10% of
each class held out; after every epoch each model's backbone is read by a kNN classifier
(k = 200, cosine, temperature 0.1) of the held-out images among the training images.

* ours: the real `PretrainModule` under Lightning's Trainer, as `contrastkit pretrain` builds it
  (in-memory uint8 batches, `BatchAugment` on whole batches, channels-last, the one-readback step,
  CSV logs, a checkpoint each epoch), no online probe, freed host memory kept for the next step
  (`keep_host_memory`, as `contrastkit pretrain` sets it);
* lightly loop: lightly 1.6.0's `SimCLRTransform` (jitter strength 0.5, no blur at 32 px, the same
  normalisation) on PIL images, a DataLoader with 2 workers, lightly's `NTXentLoss`, the
  same initial backbone and projector (a copy made before training), the same optimiser,
  learning-rate schedule and batch size, and glibc's allocator as it settles by itself (the
  process-wide `keep_host_memory` is undone around its epochs, before its workers start; free
  heap that ours left behind still serves it).

The two alternate epoch by epoch in one process (ours as a Lightning callback runs the lightly
epoch after each of its own), so load from other processes affects both alike. Training seconds
exclude the kNN evaluations and our checkpoint writes. On a CPU the script also splits our
step's time into the model's forward+backward (Method.forward with the loss, and its backward)
and the rest (batches, augmentation, the non-finite check, the optimiser, logging, Lightning).

With --budget-s and --no-lightly (the GPU check): ours alone, with as many epochs as the
budget holds (estimated from timed steps first), and kNN after the last epoch only.
Usage: python -m benchmarks.time_to_accuracy [--data FOLDER_OR_PACK] [--epochs 3]
[--limit-per-class N] [--batch-size 256] [--backbone small-cnn] [--device cpu]
[--keep-host-memory true|false]
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from benchmarks.cifar_pack import FOLDER, load
from benchmarks.measure import glibc_settled_allocator, synchronize
from benchmarks.train_step import PILImages
from contrastkit.data.datasets import InMemoryImages, holdout_split
from contrastkit.data.presets import DATASETS, DataRecipe
from contrastkit.eval.knn import knn_classify
from contrastkit.methods import Method
from contrastkit.train.config import PretrainConfig, build_config
from contrastkit.train.data import PretrainData
from contrastkit.train.factory import method_from_config
from contrastkit.train.heap import keep_freed_host_memory
from contrastkit.train.module import PretrainModule
from contrastkit.train.optim import optimization_from_config
from contrastkit.train.run import build_trainer

PRESET = "cifar10"


@dataclass
class Curve:
    """Training seconds and kNN top-1 after each epoch of one candidate."""

    seconds: list[float] = field(default_factory=list)
    top1: list[float] = field(default_factory=list)

    def seconds_to(self, accuracy: float) -> float | None:
        """Training seconds until the first epoch at or above `accuracy`."""
        total = 0.0
        for seconds, top1 in zip(self.seconds, self.top1, strict=True):
            total += seconds
            if top1 >= accuracy:
                return total
        return None


@dataclass
class StepSplit:
    """Seconds of our steps inside the model's forward and backward, and in all."""

    model: float = 0.0
    total: float = 0.0
    steps: int = 0


def split_data(args: argparse.Namespace) -> tuple[PretrainData, InMemoryImages]:
    """Training data for both candidates, and the held-out 10% of each class for kNN."""
    images, labels, classes = load(args.data, args.limit_per_class)
    keep, held = holdout_split(labels, 0.1)
    everything = InMemoryImages(images, labels, classes)
    train, test = everything.subset(keep), everything.subset(held)
    size = images.shape[-1]
    data = PretrainData(train, None, len(classes), 3, size, DataRecipe(PRESET, size, 3))
    return data, test


@torch.no_grad()
def knn_top1(
    backbone: torch.nn.Module, data: PretrainData, test: InMemoryImages, device: torch.device
) -> float:
    """kNN top-1 of the held-out images among the training images, on backbone features."""
    was_training = backbone.training
    backbone.eval()

    def features(images: Tensor) -> Tensor:
        parts = [backbone(data.normalize(b.to(device))).float() for b in images.split(1024)]
        return torch.cat(parts)

    scores = knn_classify(
        features(data.train.images),
        data.train.labels.to(device),
        features(test.images),
        k=200,
        temperature=0.1,
        num_classes=data.num_classes,
    )
    backbone.train(was_training)
    return (scores.argmax(1).cpu() == test.labels).float().mean().item()


def optimizer_and_schedule(method: Method, config: PretrainConfig, total_steps: int):
    """The optimiser and schedule `PretrainModule.configure_optimizers` builds."""
    return optimization_from_config(
        config, method.param_groups(config.fixed_predictor_lr), total_steps
    )


def lightly_epochs(
    method: Method,
    data: PretrainData,
    config: PretrainConfig,
    args: argparse.Namespace,
    split: StepSplit,
) -> Callable[[], float]:
    """One epoch of the loop lightly's SimCLR example writes per call; returns its seconds and
    adds its steps' forward+backward seconds (the model with the loss) to `split` on a CPU."""
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform

    preset = DATASETS[PRESET]
    transform = SimCLRTransform(
        input_size=data.image_size,
        cj_strength=0.5,
        gaussian_blur=0.0,
        normalize={"mean": list(preset.mean), "std": list(preset.std)},
    )
    dataset = PILImages(data.train.images.permute(0, 2, 3, 1).numpy(), transform)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=args.device.type == "cuda",
    )
    method.to(args.device)
    optimizer, scheduler = optimizer_and_schedule(method, config, len(loader) * config.epochs)
    criterion = NTXentLoss(temperature=0.5)
    backbone, projector = method.backbone, method.projector
    dtype = torch.bfloat16 if config.precision == "bf16" else None

    def epoch() -> float:
        glibc_settled_allocator()  # as the loop runs outside this process
        start = time.perf_counter()
        for (x0, x1), _ in loader:
            x0, x1 = (x.to(args.device, non_blocking=True) for x in (x0, x1))
            model_start = time.perf_counter()
            with torch.autocast(args.device.type, dtype=dtype, enabled=dtype is not None):
                loss = criterion(projector(backbone(x0)), projector(backbone(x1)))
            loss.backward()
            split.model += time.perf_counter() - model_start  # only read on a CPU
            split.steps += 1
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
        synchronize(args.device)
        seconds = time.perf_counter() - start
        split.total += seconds
        if config.keep_host_memory:
            keep_freed_host_memory()  # ours again
        return seconds

    return epoch


class Alternate(L.Callback):
    """Times our epochs; after each, evaluates ours, then trains and evaluates the other."""

    def __init__(self, data, test, device, other: Callable[[], float] | None, other_model):
        self.data, self.test, self.device = data, test, device
        self.other, self.other_model = other, other_model
        self.final_only = False  # evaluate our last epoch only (a timed run of ours alone)
        self.ours, self.lightly = Curve(), Curve()
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: PretrainModule) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: PretrainModule) -> None:
        synchronize(self.device)
        self.ours.seconds.append(time.perf_counter() - self._start)
        if self.final_only and trainer.current_epoch + 1 < trainer.max_epochs:
            self.ours.top1.append(math.nan)
            return
        self.ours.top1.append(knn_top1(module.method.backbone, self.data, self.test, self.device))
        line = f"epoch {trainer.current_epoch}: ours {self.ours.seconds[-1]:.1f} s, "
        line += f"kNN {self.ours.top1[-1]:.4f}"
        if self.other is not None:
            self.lightly.seconds.append(self.other())
            backbone = self.other_model.backbone
            self.lightly.top1.append(knn_top1(backbone, self.data, self.test, self.device))
            line += f"; lightly loop {self.lightly.seconds[-1]:.1f} s, "
            line += f"kNN {self.lightly.top1[-1]:.4f}"
        print(line, flush=True)


def time_model(module: PretrainModule, split: StepSplit, device: torch.device) -> None:
    """Accumulate the seconds of the model's forward (with the loss) and backward, and of
    whole training steps, into `split` (synchronising on a GPU, so only used on a CPU)."""

    def timed(fn: Callable, into: str) -> Callable:
        def wrapper(*args, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            synchronize(device)
            setattr(split, into, getattr(split, into) + time.perf_counter() - start)
            return result

        return wrapper

    module.method.forward = timed(module.method.forward, "model")
    module.manual_backward = timed(module.manual_backward, "model")
    step = module.training_step

    def counted_step(*args, **kwargs):
        split.steps += 1
        return step(*args, **kwargs)

    module.training_step = timed(counted_step, "total")


def estimate_epochs(config: PretrainConfig, data: PretrainData, budget_s: float, device) -> int:
    """How many epochs of our step fit in `budget_s`, from 10 timed steps after 5 warm-up."""
    method = method_from_config(config, data.image_size, 3, data.num_classes).to(device)
    method.to(memory_format=torch.channels_last)
    augment = data.augmentation(config)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)
    batch = data.train.images[: config.batch_size].to(device)
    dtype = torch.bfloat16 if config.precision == "bf16" else None

    def step() -> None:
        views = [v.contiguous(memory_format=torch.channels_last) for v in augment(batch)]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = method(views).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(10):
        step()
    synchronize(device)
    step_s = (time.perf_counter() - start) / 10
    epoch_s = step_s * (len(data.train) // config.batch_size) * 1.15  # + Lightning, logging
    return max(1, math.floor(budget_s / epoch_s))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FOLDER, help="train/ folder or a pack")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit-per-class", type=int, default=None, help="first N per class")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--backbone", default="small-cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=("32", "bf16"))
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=2, help="the lightly loop's workers")
    parser.add_argument("--budget-s", type=float, default=None, help="ours: epochs that fit")
    parser.add_argument("--no-lightly", action="store_true", help="ours alone")
    parser.add_argument(
        "--keep-host-memory", default="true", choices=("true", "false"), help="ours: the option"
    )
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    return args


def run(args: argparse.Namespace) -> dict[str, object]:
    """Train as `args` says; return the curves, our step split and the setup, and print them."""
    L.seed_everything(0, verbose=False)
    torch.set_flush_denormal(True)
    data, test = split_data(args)
    values = {
        "dataset": "cifar10",
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "lr": args.lr,
        "warmup_epochs": args.warmup_epochs,
        "probe": False,
        "loggers": "csv",
        "progress": False,
        "precision": args.precision,
        "accelerator": "gpu" if args.device.type == "cuda" else "cpu",
        "keep_host_memory": args.keep_host_memory == "true",
    }
    if args.budget_s is not None:
        probe_config = build_config([values])
        values["epochs"] = estimate_epochs(probe_config, data, args.budget_s, args.device)
        print(f"{values['epochs']} epochs fit in {args.budget_s:.0f} s (estimated)", flush=True)
    with tempfile.TemporaryDirectory() as out:
        config = build_config([{**values, "out": out}])
        if config.keep_host_memory:
            keep_freed_host_memory()  # as `contrastkit pretrain` does
        method = method_from_config(config, data.image_size, 3, data.num_classes)
        module = PretrainModule(config, method, data)
        other_model, other, other_split = None, None, StepSplit()
        if not args.no_lightly:
            other_model = copy.deepcopy(method)
            other = lightly_epochs(other_model, data, config, args, other_split)
        split = StepSplit()
        if args.device.type == "cpu":
            time_model(module, split, args.device)
        alternate = Alternate(data, test, args.device, other, other_model)
        alternate.final_only = args.no_lightly and args.budget_s is not None
        build_trainer(config, [alternate]).fit(module)
    report = {"config": config, "ours": alternate.ours, "lightly": alternate.lightly}
    report["split"] = split if split.steps else None
    report["lightly_split"] = other_split if other_split.steps and split.steps else None
    report["images"] = (len(data.train), len(test))
    print_report(args, report)
    return report


def print_report(args: argparse.Namespace, report: dict[str, object]) -> None:
    config, ours, lightly, split = (report[k] for k in ("config", "ours", "lightly", "split"))
    n_train, n_test = report["images"]
    print(
        f"\nSimCLR nt_xent, {config.backbone}, batch {config.batch_size}, {config.epochs} epochs, "
        f"SGD lr {config.lr} momentum {config.momentum} wd {config.weight_decay}, warm-up "
        f"{config.warmup_epochs} epochs then cosine, precision {config.precision}, "
        f"device {args.device}, {torch.get_num_threads()} torch threads; {n_train} training "
        f"images, kNN on {n_test} held out (k=200, T=0.1)\n"
    )
    print("| epoch | ours s (cumulative) | ours kNN top-1 | lightly s (cumulative) | lightly kNN |")
    print("|---:|---:|---:|---:|---:|")
    total_ours = total_lightly = 0.0
    for epoch, (s, acc) in enumerate(zip(ours.seconds, ours.top1, strict=True)):
        total_ours += s
        shown = "—" if math.isnan(acc) else f"{acc:.4f}"
        row = f"| {epoch + 1} | {s:.1f} ({total_ours:.1f}) | {shown} |"
        if lightly.seconds:
            total_lightly += lightly.seconds[epoch]
            row += f" {lightly.seconds[epoch]:.1f} ({total_lightly:.1f}) | "
            row += f"{lightly.top1[epoch]:.4f} |"
        else:
            row += " — | — |"
        print(row)
    if lightly.top1:
        target = lightly.top1[-1]
        mine, theirs = ours.seconds_to(target), lightly.seconds_to(target)
        reached = f"{mine:.1f} s" if mine is not None else "not reached"
        ratio = f" (**{mine / theirs:.2f}×** the lightly loop's time)" if mine else ""
        print(
            f"\nto the lightly loop's final kNN top-1 {target:.4f}: lightly loop "
            f"{theirs:.1f} s, ours {reached}{ratio}"
        )
    if split is not None:
        epoch_ms = sum(ours.seconds) / split.steps * 1e3  # with batches and Lightning's loop
        step_ms = split.total / split.steps * 1e3
        print(
            f"our step: {epoch_ms:.0f} ms in the epoch ({step_ms:.0f} ms in training_step), "
            f"of which the model's forward+backward "
            f"{split.model / split.steps * 1e3:.0f} ms; outside the model "
            f"**{1 - split.model / sum(ours.seconds):.1%}** of the epoch's step "
            f"({1 - split.model / split.total:.1%} of training_step; {split.steps} steps)"
        )
    other = report["lightly_split"]
    if other is not None:
        other_ms, other_model_ms = (
            other.total / other.steps * 1e3,
            other.model / other.steps * 1e3,
        )
        print(
            f"the lightly loop's step: {other_ms:.0f} ms in the epoch, of which the model's "
            f"forward+backward {other_model_ms:.0f} ms; outside the model "
            f"{1 - other.model / other.total:.1%} ({other.steps} steps)"
        )
        floor = split.model / split.steps * 1e3 / other_ms
        print(
            f"floor of ours/lightly time per epoch, were nothing outside our model: "
            f"**{floor:.2f}×** (our forward+backward a step over the lightly loop's whole step)"
        )


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
