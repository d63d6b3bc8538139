"""Images/s of a full SimCLR training step, ours against a reference loop built on lightly.

One step is data → two augmented views → backbone and projector on each → NT-Xent → backward →
SGD update, on the same images, backbone, projector, batch size, precision and optimiser:

* ours: in-memory uint8 batches (`train.data.EpochBatches`), `BatchAugment` on whole batches,
  channels-last memory, `Method` (simclr, nt_xent) and the non-finite check
  `PretrainModule.training_step` makes every step (its logging and Lightning's loop excluded);
* lightly: the same images as PIL images in a torchvision-style Dataset with lightly 1.6.0's
  `SimCLRTransform` (jitter strength 0.5 = 0.4/0.4/0.4/0.1, no blur at 32 px, as ours), a
  torch DataLoader with 2 workers, lightly's `NTXentLoss`, the same backbone and projector in
  PyTorch's default memory format, as lightly's examples leave it; a third row runs that loop
  with the model and batches in channels-last, to separate that gain from the rest.

Each timed run is one epoch over the images with a fresh iterator (the loader's workers start
from empty queues); the candidates alternate, and the table shows the median images/s of the
runs. Usage: python -m benchmarks.train_step [--images 4096] [--batch-size 256] [--repeats 5]
[--backbone small-cnn] [--size 32] [--device cpu] [--precision 32|bf16] [--workers 2].
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from benchmarks.measure import prepare, synchronize
from contrastkit.data.datasets import InMemoryImages
from contrastkit.data.presets import DATASETS, DataRecipe
from contrastkit.train.config import build_config
from contrastkit.train.data import EpochBatches, PretrainData
from contrastkit.train.factory import method_from_config

Epoch = Callable[[], int]  # runs one epoch, returns the number of images it trained on


class PILImages(Dataset):
    """Images held as uint8 HWC arrays and handed out as PIL images, like torchvision's CIFAR10."""

    def __init__(self, images: np.ndarray, transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[list[Tensor], int]:
        return self.transform(Image.fromarray(self.images[index])), 0


def autocast(args: argparse.Namespace):
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    return torch.autocast(args.device.type, dtype=dtype, enabled=dtype is not None)


def ours(images: Tensor, args: argparse.Namespace) -> tuple[Epoch, torch.nn.Module]:
    """Our pipeline, assembled from the pieces PretrainModule.training_step runs."""
    config = build_config([{"backbone": args.backbone, "batch_size": args.batch_size}])
    data = PretrainData(
        InMemoryImages(images, torch.zeros(len(images), dtype=torch.int64), ["x"]),
        None,
        1,
        3,
        args.size,
        DataRecipe("cifar10" if args.size == 32 else "stl10", args.size, 3),
    )
    method = method_from_config(config, args.size, 3, 1).to(args.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    method.to(memory_format=memory_format)
    augment = data.augmentation(config)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    batches = EpochBatches(data.train, args.batch_size, args.device, seed=0, epoch=lambda: 0)
    generator = torch.Generator(args.device).manual_seed(0)

    def epoch() -> int:
        seen = 0
        for batch, _ in batches:
            views = augment(batch, generator=generator)
            views = [v.contiguous(memory_format=memory_format) for v in views]
            with autocast(args):
                loss = method(views).loss
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                raise FloatingPointError("non-finite loss")
            loss.backward()
            optimizer.step()
            seen += batch.shape[0]
        synchronize(args.device)
        return seen

    return epoch, method


def lightly_reference(
    images: Tensor, model: torch.nn.Module, args: argparse.Namespace, channels_last: bool
) -> Epoch:
    """The loop lightly's SimCLR example writes, on the same images and architecture."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform

    preset = DATASETS["cifar10" if args.size == 32 else "stl10"]
    transform = SimCLRTransform(
        input_size=args.size,
        cj_strength=0.5,
        gaussian_blur=0.0 if args.size < 96 else 0.5,
        normalize={"mean": list(preset.mean), "std": list(preset.std)},
    )
    dataset = PILImages(images.permute(0, 2, 3, 1).numpy(), transform)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=args.device.type == "cuda",
    )
    backbone, projector = model.backbone, model.projector
    criterion = NTXentLoss(temperature=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)

    def epoch() -> int:
        seen = 0
        for (x0, x1), _ in loader:
            x0, x1 = (
                x.to(args.device, non_blocking=True).contiguous(memory_format=memory_format)
                for x in (x0, x1)
            )
            with autocast(args):
                loss = criterion(projector(backbone(x0)), projector(backbone(x1)))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seen += x0.shape[0]
        synchronize(args.device)
        return seen

    return epoch


def images_per_second(epoch: Epoch) -> float:
    start = time.perf_counter()
    seen = epoch()
    return seen / (time.perf_counter() - start)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096, help="images per epoch (one run)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per candidate")
    parser.add_argument("--backbone", default="small-cnn")
    parser.add_argument("--size", type=int, default=32, choices=(32, 96), help="image size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=("32", "bf16"))
    parser.add_argument("--workers", type=int, default=2, help="the reference's loader workers")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prepare(args.threads)
    images = torch.randint(0, 256, (args.images, 3, args.size, args.size), dtype=torch.uint8)
    ours_epoch, method = ours(images, args)
    candidates = {"ours": ours_epoch}
    for label, channels_last in (("lightly loop", False), ("lightly loop, channels-last", True)):
        model = copy.deepcopy(method)
        candidates[label] = lightly_reference(images, model, args, channels_last)
    for epoch in candidates.values():  # warm-up: allocator, loader workers, one-off kernels
        epoch()
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, epoch in candidates.items():
            rates[name].append(images_per_second(epoch))
    print(
        f"{args.backbone}, {args.size} px, batch {args.batch_size}, {args.images} images per run, "
        f"precision {args.precision}, device={args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} alternating runs\n"
    )
    print("| pipeline | images/s | runs (images/s) | vs lightly loop |")
    print("|---|---:|---|---:|")
    reference = statistics.median(rates["lightly loop"])
    for name, values in rates.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {median:.0f} | {runs} | **{median / reference:.2f}×** |")


if __name__ == "__main__":
    main()
