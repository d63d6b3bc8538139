"""Batched contrastive augmentation: per-sample randomness, exact geometry, colour algebra.

Geometry is checked against exact references (identity, torch.flip, slicing, linear gradients);
colour against torchvision's functional adjustments; randomness by seeding and by identical
inputs producing different views.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from contrastkit.data import augment as augment_module
from contrastkit.data.augment import BatchAugment, ViewSpec, colour_affine, resized_crop
from contrastkit.data.presets import DATASETS, DataRecipe

CIFAR = DATASETS["cifar10"]
PLAIN = {"jitter_p": 0.0, "grayscale_p": 0.0, "flip_p": 0.0}  # geometry only
WHOLE = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0)}  # the crop is the whole (square) image


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_images(batch: int = 8, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (batch, channels, size, size), dtype=torch.uint8, generator=seeded(seed)
    )


def column_gradient(batch: int = 4, size: int = 32) -> torch.Tensor:
    """uint8 images whose channel 0 holds the column index and channel 1 the row index."""
    cols = torch.arange(size).expand(size, size)
    image = torch.stack([cols, cols.T, torch.zeros_like(cols)]).to(torch.uint8)
    return image.expand(batch, -1, -1, -1).contiguous()


def test_identical_images_get_different_views() -> None:
    images = random_images(batch=1).expand(16, -1, -1, -1).contiguous()
    (view,) = BatchAugment([ViewSpec(size=32)])(images, seeded())
    flat = view.flatten(1)
    distances = torch.cdist(flat, flat)
    off_diagonal = distances[~torch.eye(16, dtype=torch.bool)]
    assert off_diagonal.min() > 1.0


def test_identity_crop_returns_the_normalised_input() -> None:
    images = random_images()
    aug = BatchAugment([ViewSpec(size=32, **WHOLE, **PLAIN)], mean=CIFAR.mean, std=CIFAR.std)
    (view,) = aug(images, seeded())
    mean, std = torch.tensor(CIFAR.mean).view(3, 1, 1), torch.tensor(CIFAR.std).view(3, 1, 1)
    torch.testing.assert_close(view, (images / 255.0 - mean) / std, atol=1e-5, rtol=0)


def test_certain_flip_is_torch_flip() -> None:
    images = random_images()
    (view,) = BatchAugment([ViewSpec(size=32, **WHOLE, **{**PLAIN, "flip_p": 1.0})])(images)
    torch.testing.assert_close(view, torch.flip(images / 255.0, dims=[-1]), atol=1e-6, rtol=0)


def test_known_box_is_an_exact_slice() -> None:
    images = torch.rand(3, 3, 32, 32)
    boxes = torch.tensor([[8.0, 4.0, 16.0, 16.0], [0.0, 0.0, 32.0, 32.0], [16.0, 20.0, 16.0, 12.0]])
    out = resized_crop(images[:1], boxes[:1], 16)
    torch.testing.assert_close(out, images[:1, :, 4:20, 8:24], atol=1e-5, rtol=0)
    flipped = resized_crop(images[2:], boxes[2:], (12, 16), flip=torch.tensor([True]))
    torch.testing.assert_close(flipped, images[2:, :, 20:32, 16:32].flip(-1), atol=1e-5, rtol=0)


def test_downscaled_box_samples_the_gradient_at_cell_centres() -> None:
    """Bilinear sampling of a linear gradient is exact, so the corners give the box away."""
    ramp = column_gradient(batch=1).float()
    out = resized_crop(ramp, torch.tensor([[8.0, 4.0, 16.0, 24.0]]), (6, 8))
    # output pixel k of n over [x0, x0 + w] samples x0 + (k + 0.5) w / n; value = position - 0.5
    assert out[0, 0, 0, 0] == pytest.approx(8 + 0.5 * 16 / 8 - 0.5, abs=1e-4)
    assert out[0, 0, 0, -1] == pytest.approx(8 + 7.5 * 16 / 8 - 0.5, abs=1e-4)
    assert out[0, 1, 0, 0] == pytest.approx(4 + 0.5 * 24 / 6 - 0.5, abs=1e-4)
    assert out[0, 1, -1, 0] == pytest.approx(4 + 5.5 * 24 / 6 - 0.5, abs=1e-4)


@pytest.mark.parametrize("area", [0.09, 0.25, 0.64])
def test_random_crops_have_the_drawn_area_and_stay_inside(area: float) -> None:
    spec = ViewSpec(size=16, scale=(area, area), ratio=(1.0, 1.0), **PLAIN)
    (view,) = BatchAugment([spec])(column_gradient(batch=64), seeded())
    pixels = view * 255.0
    # recover each box from the gradient at samples 1 and n - 2 (clear of the border clamp):
    # sample k of n over [x0, x0 + w] sits at x0 + (k + 0.5) w / n, where the value is that - 0.5
    near = pixels[:, :2, 1, 1]
    far = torch.stack([pixels[:, 0, 1, -2], pixels[:, 1, -2, 1]], dim=1)
    side = (far - near) * 16 / 13
    start = near + 0.5 - 1.5 * side / 16
    expected = torch.full_like(side, 32 * math.sqrt(area))
    torch.testing.assert_close(side, expected, atol=1e-3, rtol=0)
    assert start.min() >= -1e-3
    assert (start + side).max() <= 32 + 1e-3
    assert start.std(dim=0).min() > 1.0  # positions vary across samples


def test_values_stay_in_unit_range_before_normalisation() -> None:
    strong = ViewSpec(
        size=24, jitter_p=1.0, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5,
        blur_p=0.5, solarize_p=0.5,
    )  # fmt: skip
    views = BatchAugment([strong, ViewSpec(size=32)])(random_images(batch=32), seeded())
    for view in views:
        assert view.dtype == torch.float32
        assert view.min() >= 0.0 and view.max() <= 1.0


def recipe_views(dataset: str, size: int, channels: int = 3, augment=None, **counts):
    return DataRecipe(dataset, size, channels).augmentation(augment, **counts).views


def test_multi_crop_shapes_follow_the_specs() -> None:
    specs = recipe_views("imagenet", 64, n_global=2, n_local=6, local_size=24)
    assert [s.size for s in specs] == [64, 64] + [24] * 6
    assert [s.scale for s in specs] == [(0.14, 1.0)] * 2 + [(0.05, 0.14)] * 6
    views = BatchAugment(specs)(random_images(batch=4, size=80), seeded())
    assert [tuple(v.shape) for v in views] == [(4, 3, 64, 64)] * 2 + [(4, 3, 24, 24)] * 6
    rect = BatchAugment([ViewSpec(size=(12, 20))])(random_images(batch=2), seeded())
    assert rect[0].shape == (2, 3, 12, 20)


def test_recipes_follow_the_dataset_defaults() -> None:
    cifar = recipe_views("cifar10", 32)
    assert all(s.blur_p == 0.0 and s.solarize_p == 0.0 for s in cifar)
    assert (cifar[0].brightness, cifar[0].saturation, cifar[0].hue) == (0.4, 0.4, 0.1)
    assert cifar[0].mean == CIFAR.mean and cifar[0].std == CIFAR.std
    stl = recipe_views("stl10", 96)
    assert [s.blur_p for s in stl] == [0.5, 0.5] and stl[0].kernel_size == 9
    byol = recipe_views("imagenet", 224, augment="byol")
    assert [(s.blur_p, s.solarize_p, s.saturation) for s in byol] == [
        (1.0, 0.0, 0.2),
        (0.1, 0.2, 0.2),
    ]
    assert byol[0].kernel_size == 23
    local = recipe_views("imagenet", 224, n_local=2)
    assert [s.size for s in local] == [224, 224, 96, 96]
    gray = recipe_views("fashion-mnist", 28, channels=1)
    assert all(s.jitter_p == 0.0 and s.grayscale_p == 0.0 for s in gray)
    imagenet = recipe_views("imagenet", 224, n_local=6)
    assert [(s.size, s.scale) for s in imagenet] == [(224, (0.14, 1.0))] * 2 + [
        (96, (0.05, 0.14))
    ] * 6
    digits = recipe_views("digits", 8, channels=1)
    assert all(s.scale == (0.25, 1.0) and s.flip_p == 0.0 for s in digits)


def test_certain_grayscale_gives_equal_channels() -> None:
    spec = ViewSpec(size=32, grayscale_p=1.0, jitter_p=1.0)
    (view,) = BatchAugment([spec])(random_images(), seeded())
    torch.testing.assert_close(view[:, 1:], view[:, :1].expand(-1, 2, -1, -1), atol=1e-6, rtol=0)
    assert view.std() > 0.05


def test_certain_solarize_matches_the_closed_form() -> None:
    images = random_images()
    spec = ViewSpec(size=32, **WHOLE, **PLAIN, solarize_p=1.0, solarize_threshold=0.5)
    (view,) = BatchAugment([spec])(images, seeded())
    pixels = images / 255.0
    torch.testing.assert_close(
        view, torch.where(pixels >= 0.5, 1.0 - pixels, pixels), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (2, 1, 0, 3), (1, 2, 3, 0)])
def test_colour_affine_matches_torchvision_adjustments(order: tuple[int, ...]) -> None:
    images = 0.3 + 0.4 * torch.rand(4, 3, 8, 8, generator=seeded())  # no clamping below
    factors = torch.tensor([[1.1, 0.8, 1.2], [0.9, 1.2, 0.7], [1.0, 1.0, 1.0], [1.2, 0.6, 1.3]])
    matrix, offset = colour_affine(
        images.mean(dim=(2, 3)),
        factors,
        hue=torch.zeros(4),
        order=torch.tensor(order).expand(4, -1),
        grayscale=torch.tensor([False, False, True, False]),
    )
    out = torch.einsum("bij,bjhw->bihw", matrix, images) + offset[:, :, None, None]
    adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for b in range(4):
        expected = images[b]
        for op in order:
            if op < 3:
                expected = adjust[op](expected, factors[b, op].item())
        if b == 2:
            expected = TF.rgb_to_grayscale(expected, num_output_channels=3)
        torch.testing.assert_close(out[b], expected, atol=2e-3, rtol=0)


def test_hue_rotation_keeps_luma_and_full_turn_is_identity() -> None:
    images = torch.rand(3, 3, 8, 8, generator=seeded())
    hue = torch.tensor([0.25, -0.4, 1.0])
    matrix, offset = colour_affine(
        images.mean(dim=(2, 3)),
        torch.ones(3, 3),
        hue,
        torch.arange(4).expand(3, -1),
        torch.zeros(3, dtype=torch.bool),
    )
    out = torch.einsum("bij,bjhw->bihw", matrix, images) + offset[:, :, None, None]
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    torch.testing.assert_close((out * luma).sum(1), (images * luma).sum(1), atol=1e-5, rtol=0)
    assert (out[0] - images[0]).abs().max() > 0.05
    torch.testing.assert_close(out[2], images[2], atol=1e-5, rtol=0)


def test_same_seed_same_views_other_seed_other_views() -> None:
    aug = DataRecipe("stl10", 96, 3).augmentation("byol", n_local=2)
    images = random_images(batch=4, size=96)
    first, again, other = aug(images, seeded(1)), aug(images, seeded(1)), aug(images, seeded(2))
    for a, b, c in zip(first, again, other, strict=True):
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


@pytest.mark.parametrize(("name", "size"), [("digits", 8), ("fashion-mnist", 28)])
def test_one_channel_datasets(name: str, size: int) -> None:
    images = random_images(batch=6, channels=1, size=size)
    views = DataRecipe(name, size, 1).augmentation()(images, seeded())
    assert [tuple(v.shape) for v in views] == [(6, 1, size, size)] * 2
    assert all(torch.isfinite(v).all() for v in views)
    # colour ops forced on: brightness/contrast apply, the rest are no-ops, nothing crashes
    spec = ViewSpec(size=size, jitter_p=1.0, grayscale_p=1.0, blur_p=1.0, blur_kernel=3)
    (view,) = BatchAugment([spec])(images, seeded())
    assert view.shape == (6, 1, size, size) and view.min() >= 0.0 and view.max() <= 1.0


@pytest.mark.parametrize("jitter_mode", ["torchvision", "linear"])
def test_cpu_sample_groups_give_the_views_of_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch, jitter_mode: str
) -> None:
    """On a CPU the samples are transformed in cache-sized groups: bit for bit the whole batch's
    views, with blur, solarize, two view sizes, an uneven last group and padded whole images."""
    images = random_images(batch=40, size=24)
    sizes = torch.randint(12, 25, (40, 2), generator=seeded(1))
    common = {"jitter_mode": jitter_mode, "jitter_p": 1.0, "blur_p": 0.5, "solarize_p": 0.5}
    augment = BatchAugment(
        [ViewSpec(size=16, **common), ViewSpec(size=8, **common)], CIFAR.mean, CIFAR.std
    )

    def views(group_pixels: int) -> list[torch.Tensor]:
        monkeypatch.setattr(augment_module, "_CPU_GROUP_PIXELS", group_pixels)
        monkeypatch.setattr(augment_module, "_MIN_GROUP", 1)
        return augment(images, seeded(2), sizes) + augment(images, seeded(3))

    whole = views(10**9)
    grouped = views(16 * 16 * 16)  # groups of 16, 16, 8 at 16 px; of 64 (all 40) at 8 px
    tiny = views(3 * 16 * 16)  # groups of 3 at 16 px
    for a, b, c in zip(whole, grouped, tiny, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_under_passive_waiting_a_cpu_augments_on_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Passive OpenMP waiting makes each small parallel region wake a sleeping thread, so the
    augmentation runs on one thread then (and on all of them when threads spin), with the same
    views; the thread count is restored after it."""
    seen: list[int] = []
    crop = augment_module.resized_crop

    def recording_crop(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return crop(*args, **kwargs)

    monkeypatch.setattr(augment_module, "resized_crop", recording_crop)
    augment = BatchAugment([ViewSpec(size=16)] * 2, CIFAR.mean, CIFAR.std)
    images = random_images(batch=16)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        views = {}
        for policy, expected in (("PASSIVE", 1), ("passive ", 1), ("ACTIVE", 2)):
            monkeypatch.setenv("OMP_WAIT_POLICY", policy)
            seen.clear()
            views[policy] = augment(images, seeded())
            assert seen == [expected, expected], policy
            assert torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_WAIT_POLICY")
        seen.clear()
        augment(images, seeded())
        assert seen == [2, 2]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(views["PASSIVE"], views["ACTIVE"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_bad_inputs_are_rejected() -> None:
    aug = BatchAugment([ViewSpec(size=8)], mean=CIFAR.mean, std=CIFAR.std)
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        aug(random_images(channels=1, size=8))
    with pytest.raises(ValueError, match="flip_p"):
        ViewSpec(size=8, flip_p=1.5)
    with pytest.raises(ValueError, match="does not fit"):
        ViewSpec(size=4, blur_p=0.5, blur_kernel=9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_views_match_cpu_views() -> None:
    """Parameters come from the CPU generator, so both devices make the same views."""
    aug = DataRecipe("stl10", 96, 3).augmentation("byol", n_local=2)
    images = random_images(batch=8, size=96)
    cpu = aug(images, seeded(3))
    gpu = aug.cuda()(images.cuda(), seeded(3))
    for c, g in zip(cpu, gpu, strict=True):
        assert g.device.type == "cuda" and g.dtype == torch.float32
        torch.testing.assert_close(g.cpu(), c, atol=1e-3, rtol=0)
