"""Time of gradient clipping over a ViT-S/16's gradients: ours (foreach ops, no readback)
against torch's `clip_grad_norm_` (global) and DINO's per-parameter loop, which reads every
parameter's factor back to the host (`if clip_coef < 1`).

Random gradients shaped like timm's vit_small_patch16_224 parameters (built on the meta device
for their shapes: 150 tensors, 21.7 M values), restored before every call and clipped at a norm
below theirs, so every candidate scales every tensor; candidates alternate, and the table shows
median milliseconds less the restoring copy's. The ratio is what matters
on a shared CPU; on a GPU the per-parameter loop also waits for the device 152 times a step.
Usage: python -m benchmarks.clipping [--repeats 20] [--device cpu] [--threads 2].
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from benchmarks.measure import paired_median_ms, prepare
from contrastkit.models.library_backbones import build_library_model
from contrastkit.train.clipping import clip_gradients


def vit_small_gradients(device: torch.device) -> list[Tensor]:
    with torch.device("meta"):
        model = build_library_model("timm/vit_small_patch16_224", 3, {})
    return [torch.randn(p.shape, device=device) for p in model.body.parameters()]


def dino_loop(grads: list[Tensor], clip: float) -> None:
    """The per-parameter rule as DINO's loop runs it: one norm and one host branch each."""
    for grad in grads:
        factor = clip / (grad.norm(2).item() + 1e-6)
        if factor < 1:
            grad.mul_(factor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    prepare(args.threads)
    device = torch.device(args.device)
    originals = vit_small_gradients(device)
    grads = [g.clone() for g in originals]
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]  # holders of the grads
    for p, g in zip(params, grads, strict=True):
        p.grad = g  # clip_grad_norm_ reads .grad: the same tensors
    clip = 1e-3  # below every norm: every candidate scales every tensor

    def restored(clipping):
        def step() -> None:
            torch._foreach_copy_(grads, originals)  # the same unclipped gradients each time
            clipping()

        return step

    steps = {
        "restore only": restored(lambda: None),
        "ours global": restored(lambda: clip_gradients(grads, clip, "global")),
        "torch clip_grad_norm_": restored(lambda: torch.nn.utils.clip_grad_norm_(params, clip)),
        "ours per_parameter": restored(lambda: clip_gradients(grads, clip, "per_parameter")),
        "DINO loop (per parameter)": restored(lambda: dino_loop(grads, clip)),
    }
    measured = paired_median_ms(list(steps.values()), args.repeats, device)
    times = dict(zip(steps, measured, strict=True))
    base = times.pop("restore only")
    net = {name: value - base for name, value in times.items()}
    values = sum(g.numel() for g in grads) / 1e6
    print(f"{len(grads)} tensors, {values:.1f} M values, {args.device}; restoring the gradients "
          f"before each call: {base:.2f} ms (subtracted)\n")  # fmt: skip
    print("| clipping | ms | ours / peer |")
    print("|---|---|---|")
    for ours, peer in (("ours global", "torch clip_grad_norm_"),
                       ("ours per_parameter", "DINO loop (per parameter)")):  # fmt: skip
        print(f"| {ours} | {net[ours]:.2f} | {net[ours] / net[peer]:.2f} |")
        print(f"| {peer} | {net[peer]:.2f} | |")


if __name__ == "__main__":
    main()
