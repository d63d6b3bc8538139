"""`make gpu-check`: every GPU figure the project needs, in one call of at most 8 minutes.

On a CUDA machine it runs, each step in its own process with its own time limit:

1. the `gpu`-marked tests (bf16/fp16 autocast, augmentation on CUDA tensors, channels-last,
   torch.compile, synchronisations per step under `torch.cuda.set_sync_debug_mode`);
2. `benchmarks.train_step --device cuda` (ResNet-18, 32 px, batch 512, bf16) against the lightly
   loop;
3. `benchmarks.augment` and `benchmarks.losses` on CUDA;
4. a CIFAR-10 SimCLR run (ResNet-18, batch 512, bf16, as many epochs as fit in 4 minutes) with
   kNN on the held-out 10% of each class (`benchmarks.time_to_accuracy --no-lightly`), reading
   the pack `benchmarks.cifar_pack` writes (carry/cifar10_train.npz, made here from
   ../shared/data when missing; the GPU machine has no ../shared).

It writes every figure, with the GPU's name and the date, into docs/results.md. With --dry-run
the same steps run at toy sizes on the CPU (CI runs this), writing runs/gpu-check-dry/results.md.
Nothing is installed: the steps run with this interpreter and PYTHONPATH=src:.
Usage: python -m benchmarks.gpu_check [--dry-run] [--results PATH]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.cifar_pack import FOLDER, PACK, pack
from contrastkit.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Step:
    """One command of the check, its time limit, and what its figures are."""

    title: str
    argv: list[str]
    limit_s: int


def steps(dry_run: bool, data: Path) -> list[Step]:
    """The check's commands: full sizes on CUDA, or toy sizes on the CPU."""
    py = [sys.executable]
    if dry_run:
        device, train_step = "cpu", ["--backbone", "small-cnn", "--batch-size", "32"]
        train_step += ["--images", "64", "--repeats", "1", "--precision", "32"]
        augment = ["--images-32", "64", "--images-96", "16", "--repeats", "1", "--batch-size", "32"]
        losses = ["--sizes", "64", "--repeats", "1", "--only", "nt_xent,vicreg"]
        simclr = ["--device", "cpu", "--backbone", "small-cnn", "--batch-size", "32"]
        simclr += ["--limit-per-class", "20", "--budget-s", "1", "--no-lightly"]
    else:
        device, train_step = "cuda", ["--backbone", "resnet18", "--batch-size", "512"]
        train_step += ["--images", "8192", "--repeats", "3", "--precision", "bf16"]
        augment = ["--repeats", "3", "--images-32", "8192", "--images-96", "2048"]
        losses = ["--sizes", "1024,4096", "--repeats", "3"]
        simclr = ["--device", "cuda", "--backbone", "resnet18", "--batch-size", "512"]
        simclr += ["--precision", "bf16"]
        simclr += ["--budget-s", "220", "--no-lightly"]  # with loading and kNN about 4 min
    pytest = [*py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]

    def limit(seconds: int) -> int:  # a dry run's limit only guards against a hang
        return 600 if dry_run else seconds

    return [
        Step("GPU-marked tests", pytest, limit(150)),
        Step(
            "Train step (ours vs the lightly loop)",
            [*py, "-m", "benchmarks.train_step", "--device", device, *train_step],
            limit(60),
        ),
        Step(
            "Augmentation",
            [*py, "-m", "benchmarks.augment", "--device", device, *augment],
            limit(45),
        ),
        Step("Losses", [*py, "-m", "benchmarks.losses", "--device", device, *losses], limit(60)),
        Step(
            "CIFAR-10 SimCLR, kNN on the held-out 10%",
            [*py, "-m", "benchmarks.time_to_accuracy", "--data", str(data), *simclr],
            limit(330),
        ),
    ]


# What the steps import; a machine without one says so in the results' header.
MODULES = ("torch", "torchvision", "lightning", "sklearn", "PIL", "yaml", "tensorboard")
MODULES += ("pytest", "hypothesis", "lightly", "kornia")


def missing_modules() -> list[str]:
    return [name for name in MODULES if importlib.util.find_spec(name) is None]


def device_name(dry_run: bool) -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "no CUDA device (CPU)" if dry_run else "no CUDA device found"


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_step(step: Step) -> tuple[str, float, str]:
    """(status, seconds, output) of one step; a step past its limit is stopped, not waited on."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            step.argv,
            cwd=ROOT,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=step.limit_s,
        )
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        output = done.stdout + (f"\n{done.stderr[-3000:]}" if done.returncode else "")
    except subprocess.TimeoutExpired as error:
        status = f"stopped at its {step.limit_s} s limit"
        output = error.stdout.decode() if isinstance(error.stdout, bytes) else error.stdout or ""
    return status, time.perf_counter() - start, output.strip()


def ensure_pack(dry_run: bool) -> Path:
    """The CIFAR-10 pack, made from ../shared/data if it is missing. A dry run packs 20 images
    of each class, or random images in the same layout where ../shared/data is absent (CI)."""
    path = PACK.with_name("cifar10_train_dry.npz") if dry_run else PACK
    if path.is_file():
        return path
    if FOLDER.is_dir():
        return pack(FOLDER, path, limit_per_class=20 if dry_run else None)
    if not dry_run:
        raise SystemExit(f"gpu-check: neither {path} nor {FOLDER} exists; run `make gpu-pack`")
    with tempfile.TemporaryDirectory() as folder:
        return pack(random_folder(Path(folder)), path)


def random_folder(root: Path, classes: int = 10, per_class: int = 20) -> Path:
    """A CIFAR-10-shaped folder of random 32x32 JPEGs."""
    generator = np.random.default_rng(0)
    for label in range(classes):
        (root / f"class{label}").mkdir()
        for index in range(per_class):
            pixels = generator.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{label}" / f"{index:04d}.jpg")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--pack-only", action="store_true", help="write the CIFAR-10 pack, stop")
    args = parser.parse_args(argv)
    data = ensure_pack(args.dry_run)
    if args.pack_only:
        print(f"pack: {data} ({data.stat().st_size / 2**20:.1f} MiB)")
        return 0
    default = "runs/gpu-check-dry/results.md" if args.dry_run else "docs/results.md"
    results = ROOT / (args.results or default)
    import torch

    name, today = device_name(args.dry_run), datetime.date.today().isoformat()
    header = [
        f"# GPU results{' (dry run: toy sizes on the CPU)' if args.dry_run else ''}\n",
        f"Measured on **{name}**, {today}, by `make gpu-check"
        f"{' DRY_RUN=1' if args.dry_run else ''}` (benchmarks/gpu_check.py); torch "
        f"{torch.__version__}, CUDA {torch.version.cuda}, Python {sys.version.split()[0]}; "
        f"modules missing: {', '.join(missing_modules()) or 'none'}.\n",
    ]
    sections, failed, total = [], 0, time.perf_counter()
    for step in steps(args.dry_run, data):
        print(f"[gpu-check] {step.title} ...", flush=True)
        status, seconds, output = run_step(step)
        print(f"[gpu-check] {step.title}: {status}, {seconds:.0f} s", flush=True)
        failed += status != "ok"
        command = " ".join(Path(a).name if a == sys.executable else a for a in step.argv)
        sections.append(
            f"## {step.title}\n\n`{command}`: {status} in {seconds:.0f} s ({name}, {today})\n\n"
            f"{output}\n"
        )
    elapsed = time.perf_counter() - total
    header.append(f"All steps: {elapsed:.0f} s; {failed} not ok.\n")
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results, "\n".join(header + sections))
    print(f"[gpu-check] {elapsed:.0f} s, {failed} step(s) not ok; figures in {results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
