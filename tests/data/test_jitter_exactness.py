"""The torchvision colour-jitter mode equals torchvision's ColorJitter per pixel, given the same
factors and order (drawn by ColorJitter.get_params), on synthetic and on real CIFAR-10 images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import ColorJitter
from torchvision.transforms import functional as TF

from contrastkit.data import augment as augment_module
from contrastkit.data.augment import BatchAugment, ViewSpec, torchvision_jitter

CIFAR_TRAIN = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10" / "train"
SPANS = (0.8, 0.8, 0.8, 0.2)  # SimCLR's strength 1: the widest jitter any recipe uses


def torchvision_reference(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """ColorJitter's own parameters per image, and its output (RandomGrayscale after it)."""
    torch.manual_seed(seed)
    jitter = ColorJitter(*SPANS)
    ranges = (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
    params = [ColorJitter.get_params(*ranges) for _ in images]
    gray = torch.rand(len(images)) < 0.3
    out = []
    for image, (order, b, c, s, h), g in zip(images, params, gray, strict=True):
        adjust = {0: (TF.adjust_brightness, b), 1: (TF.adjust_contrast, c)}
        adjust |= {2: (TF.adjust_saturation, s), 3: (TF.adjust_hue, h)}
        for op in order.tolist():
            fn, factor = adjust[op]
            image = fn(image, factor)
        out.append(TF.rgb_to_grayscale(image, num_output_channels=3) if g else image)
    factors = torch.tensor([[b, c, s] for _, b, c, s, _ in params])
    hue = torch.tensor([h for *_, h in params])
    order = torch.stack([p[0] for p in params])
    return torch.stack(out), factors, hue, order, gray


def assert_matches_torchvision(images: torch.Tensor) -> None:
    expected, factors, hue, order, gray = torchvision_reference(images, seed=0)
    ours = torchvision_jitter(images.clone(), factors, hue, order, gray)
    close = (ours - expected).abs() <= 1 / 255
    assert close.float().mean() >= 0.99, close.float().mean()
    assert (ours - expected).abs().max() < 0.05  # and nothing far off anywhere


def test_synthetic_images_match_torchvision() -> None:
    generator = torch.Generator().manual_seed(0)
    smooth = torch.rand(48, 3, 4, 4, generator=generator)
    images = torch.nn.functional.interpolate(smooth, size=24, mode="bilinear")  # natural-ish
    saturated = torch.randint(0, 2, (16, 3, 24, 24), generator=generator).float()  # clamp edges
    assert_matches_torchvision(torch.cat([images, saturated]))


@pytest.mark.skipif(not CIFAR_TRAIN.is_dir(), reason=f"no CIFAR-10 images at {CIFAR_TRAIN}")
def test_real_cifar10_images_match_torchvision() -> None:
    from PIL import Image

    files = [p for folder in sorted(CIFAR_TRAIN.iterdir()) for p in sorted(folder.iterdir())[:10]]
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    assert len(images) == 100
    assert_matches_torchvision(images)


def test_linear_mode_is_another_computation() -> None:
    """The two modes agree with no hue shift and no clamping, and differ with a hue shift."""
    images = torch.randint(60, 190, (64, 3, 16, 16), dtype=torch.uint8)
    whole = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "flip_p": 0.0, "grayscale_p": 0.0}
    mild = {**whole, "jitter_p": 1.0, "brightness": 0.1, "contrast": 0.1, "saturation": 0.1}
    views = {}
    for hue in (0.0, 0.3):
        for mode in ("torchvision", "linear"):
            spec = ViewSpec(size=16, **mild, hue=hue, jitter_mode=mode)
            views[hue, mode] = BatchAugment([spec])(images, torch.Generator().manual_seed(1))[0]
    torch.testing.assert_close(views[0.0, "torchvision"], views[0.0, "linear"], atol=2e-3, rtol=0)
    assert (views[0.3, "torchvision"] - views[0.3, "linear"]).abs().max() > 0.05


def test_batch_augment_runs_each_samples_jitter_in_its_drawn_order() -> None:
    """End to end (whole-image crop, no flip): the view is torchvision_jitter of the image with
    the parameters of the view's draws, so every sample's hue lands in its own step."""
    images = torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8)
    spec = ViewSpec(size=12, scale=(1, 1), ratio=(1, 1), flip_p=0, jitter_p=0.8, hue=0.4)
    (view,) = BatchAugment([spec])(images, torch.Generator().manual_seed(5))
    draws = torch.rand(32, augment_module._N_DRAWS, generator=torch.Generator().manual_seed(5))
    params = augment_module._colour_params(draws, spec)
    expected = torchvision_jitter(images / 255.0, *params)
    torch.testing.assert_close(view, expected, atol=1e-5, rtol=0)


def test_hue_shift_equals_adjust_hue_at_every_pixel() -> None:
    """The closed-form hue shift equals TF.adjust_hue to float rounding everywhere: smooth
    colours, saturated corners, greys (any hue, same grey) and ties between max channels."""
    generator = torch.Generator().manual_seed(0)
    smooth = torch.rand(48, 3, 16, 16, generator=generator)
    corners = torch.randint(0, 2, (8, 3, 16, 16), generator=generator).float()
    greys = torch.rand(4, 1, 16, 16, generator=generator).expand(-1, 3, -1, -1)
    ties = torch.randint(0, 4, (4, 3, 16, 16), generator=generator).float() / 3
    images = torch.cat([smooth, corners, greys, ties])
    turns = torch.rand(len(images), generator=generator) - 0.5
    expected = torch.stack(
        [TF.adjust_hue(im, float(t)) for im, t in zip(images, turns, strict=True)]
    )
    torch.testing.assert_close(
        augment_module._shift_hue(images, turns), expected, atol=1e-5, rtol=0
    )
