"""Throughput of two-view SimCLR augmentation: ours vs kornia vs torchvision.

Every candidate makes two views of each image with the same recipe (random resized crop,
flip, colour jitter p=0.8, grayscale p=0.2, normalisation; Gaussian blur p=0.5 from 96 px)
starting from uint8 images in host memory:

* ours: ``contrastkit.data.augment.BatchAugment`` on whole batches;
* kornia: ``kornia.augmentation`` on whole batches (per-sample parameters);
* v2 loop: ``torchvision.transforms.v2`` called once per image on uint8 tensors;
* PIL loader: torchvision's per-image PIL transforms in a DataLoader with 2 workers, the usual
  input pipeline.

Runs alternate between candidates; the table shows the median of the repeats, in images/s
(each image yields 2 views) and views/s. Usage: ``.venv/bin/python -m benchmarks.augment``;
on a machine shared with other jobs, set ``OMP_WAIT_POLICY=PASSIVE`` or pass ``--threads 1``,
as spin-waiting OpenMP threads make every multi-threaded candidate collapse there.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.transforms import v2

from contrastkit.data.presets import DATASETS, DataRecipe

VIEWS = 2
DATASET_FOR_SIZE = {32: "cifar10", 96: "stl10"}


def recipe(size: int) -> dict:
    """The shared SimCLR settings at ``size``: what every candidate is configured from."""
    spec = DataRecipe(DATASET_FOR_SIZE[size], size, 3).augmentation().views[0]
    preset = DATASETS[DATASET_FOR_SIZE[size]]
    return {
        "size": size,
        "scale": spec.scale,
        "jitter": (spec.brightness, spec.contrast, spec.saturation, spec.hue),
        "jitter_p": spec.jitter_p,
        "grayscale_p": spec.grayscale_p,
        "blur_p": spec.blur_p,
        "kernel": spec.kernel_size,
        "sigma": spec.blur_sigma,
        "mean": preset.mean,
        "std": preset.std,
    }


def batches(images: Tensor, batch_size: int) -> Iterator[Tensor]:
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


def run_ours(
    images: Tensor, cfg: dict, batch_size: int, device: torch.device
) -> Callable[[], None]:
    aug = DataRecipe(DATASET_FOR_SIZE[cfg["size"]], cfg["size"], 3).augmentation()

    def run() -> None:
        for batch in batches(images, batch_size):
            aug(batch.to(device, non_blocking=True))

    return run


def run_kornia(
    images: Tensor, cfg: dict, batch_size: int, device: torch.device
) -> Callable[[], None]:
    import kornia.augmentation as K

    size = cfg["size"]
    steps: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=cfg["scale"]),
        K.RandomHorizontalFlip(),
        K.ColorJitter(*cfg["jitter"], p=cfg["jitter_p"]),
        K.RandomGrayscale(p=cfg["grayscale_p"]),
    ]
    if cfg["blur_p"]:
        steps.append(K.RandomGaussianBlur(cfg["kernel"], cfg["sigma"], p=cfg["blur_p"]))
    steps.append(K.Normalize(torch.tensor(cfg["mean"]), torch.tensor(cfg["std"])))
    aug = nn.Sequential(*steps).to(device)

    def run() -> None:
        for batch in batches(images, batch_size):
            pixels = batch.to(device, non_blocking=True).float().div_(255)
            for _ in range(VIEWS):
                aug(pixels)

    return run


def run_v2_loop(
    images: Tensor, cfg: dict, batch_size: int, device: torch.device
) -> Callable[[], None]:
    steps: list[nn.Module] = [
        v2.RandomResizedCrop(cfg["size"], scale=cfg["scale"], antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(*cfg["jitter"])], p=cfg["jitter_p"]),
        v2.RandomGrayscale(p=cfg["grayscale_p"]),
    ]
    if cfg["blur_p"]:
        steps.append(v2.RandomApply([v2.GaussianBlur(cfg["kernel"], cfg["sigma"])], cfg["blur_p"]))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg["mean"], cfg["std"])]
    aug = v2.Compose(steps)

    def run() -> None:
        for batch in batches(images, batch_size):
            batch = batch.to(device, non_blocking=True)
            for _ in range(VIEWS):
                torch.stack([aug(image) for image in batch])

    return run


class TwoViewImages(Dataset):
    """HWC uint8 images turned into PIL images and augmented twice, as in a typical dataset."""

    def __init__(self, images: np.ndarray, transform: Callable[[Image.Image], Tensor]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> list[Tensor]:
        image = Image.fromarray(self.images[index])
        return [self.transform(image) for _ in range(VIEWS)]


def run_pil_loader(
    images: Tensor, cfg: dict, batch_size: int, device: torch.device
) -> Callable[[], None]:
    steps: list[Callable] = [
        T.RandomResizedCrop(cfg["size"], scale=cfg["scale"]),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(*cfg["jitter"])], p=cfg["jitter_p"]),
        T.RandomGrayscale(p=cfg["grayscale_p"]),
    ]
    if cfg["blur_p"]:
        steps.append(T.RandomApply([T.GaussianBlur(cfg["kernel"], cfg["sigma"])], cfg["blur_p"]))
    steps += [T.ToTensor(), T.Normalize(cfg["mean"], cfg["std"])]
    dataset = TwoViewImages(images.permute(0, 2, 3, 1).numpy(), T.Compose(steps))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=2, persistent_workers=True)

    def run() -> None:
        for views in loader:
            for view in views:
                view.to(device, non_blocking=True)

    return run


CANDIDATES = {
    "ours": run_ours,
    "kornia": run_kornia,
    "v2 loop": run_v2_loop,
    "PIL loader": run_pil_loader,
}


def timed(run: Callable[[], None], device: torch.device) -> float:
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench_size(size: int, n_images: int, args: argparse.Namespace) -> dict[str, float]:
    """Median images/s per candidate at ``size``, from runs alternating between candidates."""
    device = torch.device(args.device)
    images = torch.randint(0, 256, (n_images, 3, size, size), dtype=torch.uint8)
    cfg = recipe(size)
    runs = {name: make(images, cfg, args.batch_size, device) for name, make in CANDIDATES.items()}
    for run in runs.values():  # warm-up: worker start-up, allocator, first-call overheads
        timed(run, device)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            seconds[name].append(timed(run, device))
    return {name: n_images / statistics.median(times) for name, times in seconds.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (skipped if unavailable)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per candidate")
    parser.add_argument("--images-32", type=int, default=1024, help="images per run at 32 px")
    parser.add_argument("--images-96", type=int, default=256, help="images per run at 96 px")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"skipped: --device {args.device} requested but CUDA is not available")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores (load average {load})"
    if args.device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name(args.device)}"
    print(
        f"{datetime.date.today()} · {machine} · device {args.device} · "
        f"torch {torch.__version__} · {torch.get_num_threads()} torch threads · "
        f"batch {args.batch_size} · median of {args.repeats} alternating runs · "
        f"{VIEWS} views per image\n"
    )
    print("| size | method | images/s | views/s | vs PIL loader |")
    print("|---:|---|---:|---:|---:|")
    for size, n_images in ((32, args.images_32), (96, args.images_96)):
        rates = bench_size(size, n_images, args)
        for name, rate in rates.items():
            ratio = rate / rates["PIL loader"]
            print(f"| {size} | {name} | {rate:,.0f} | {VIEWS * rate:,.0f} | {ratio:.1f}× |")


if __name__ == "__main__":
    main()
