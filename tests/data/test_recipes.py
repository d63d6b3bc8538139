"""Augmentation settings per group and per view, and named recipes, observed in the views they
make: crop areas, solarized and blurred fractions, normalisation, one view's override."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.data.augment import BatchAugment
from contrastkit.data.presets import DataRecipe
from contrastkit.data.recipes import RECIPES, normalize_augment, set_augment_key

# Geometry and chosen effects only: no colour, flip, blur or normalisation unless a test adds it.
PLAIN = {
    "jitter_p": 0.0,
    "grayscale_p": 0.0,
    "flip_p": 0.0,
    "blur_p": 0.0,
    "mean": (0.0, 0.0, 0.0),
    "std": (1.0, 1.0, 1.0),
}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def augmentation(augment, size: int = 32, dataset: str = "cifar10", **counts) -> BatchAugment:
    return DataRecipe(dataset, size, 3).augmentation(augment, **counts)


def white(batch: int, size: int = 16) -> torch.Tensor:
    return torch.full((batch, 3, size, size), 255, dtype=torch.uint8)


def test_drawn_crop_areas_lie_inside_the_scale_range() -> None:
    """A column/row-index image reveals each crop's width and height in the view."""
    size, lo, hi = 64, 0.2, 0.5
    cols = torch.arange(size).expand(size, size)
    image = torch.stack([cols, cols.T, torch.zeros_like(cols)]).to(torch.uint8)
    images = image.expand(400, -1, -1, -1).contiguous()
    augment = {**PLAIN, "scale": (lo, hi), "ratio": (1.0, 1.0), "global": {"crop_size": 16}}
    (view,) = augmentation(augment, size=size, dataset="imagenet", n_global=1)(images, seeded())
    pixels = view * 255.0
    # sample k of n over [x0, x0 + w] sits at x0 + (k + 0.5) w / n
    width = (pixels[:, 0, 1, -2] - pixels[:, 0, 1, 1]) * 16 / 13
    height = (pixels[:, 1, -2, 1] - pixels[:, 1, 1, 1]) * 16 / 13
    area = width * height / size**2
    assert area.min() >= lo - 0.01 and area.max() <= hi + 0.01
    assert area.min() < lo + 0.05 and area.max() > hi - 0.05  # the whole range is drawn


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_the_solarized_fraction_is_near_p(p: float) -> None:
    """White pixels solarize to black, so a view is solarized exactly when it is all black."""
    n = 2000
    (view,) = augmentation({**PLAIN, "solarize_p": p}, n_global=1)(white(n), seeded())
    solarized = (view.amax(dim=(1, 2, 3)) < 0.01).float().mean().item()
    assert abs(solarized - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_solarize_threshold_decides_which_pixels_flip() -> None:
    grey = torch.full((4, 3, 8, 8), 128, dtype=torch.uint8)  # 0.502
    at = {**PLAIN, "solarize_p": 1.0}
    (low,) = augmentation({**at, "solarize_threshold": 0.5}, n_global=1)(grey, seeded())
    (high,) = augmentation({**at, "solarize_threshold": 0.6}, n_global=1)(grey, seeded())
    torch.testing.assert_close(low, torch.full_like(low, 1 - 128 / 255))
    torch.testing.assert_close(high, torch.full_like(high, 128 / 255))


def test_blur_is_applied_to_about_p_of_the_samples() -> None:
    """Blur smooths a checkerboard towards flat grey; unblurred samples keep it sharp."""
    n, p = 1200, 0.3
    board = ((torch.arange(16)[:, None] + torch.arange(16)) % 2 * 255).to(torch.uint8)
    images = board.expand(n, 3, 16, 16).contiguous()
    augment = {**PLAIN, "scale": (1, 1), "ratio": (1, 1), "blur_p": p, "blur_sigma": (1, 2)}
    (view,) = augmentation(augment, size=16, n_global=1)(images, seeded())
    blurred = (view.std(dim=(1, 2, 3)) < 0.25).float().mean().item()
    assert abs(blurred - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_one_views_override_shows_in_that_view_only() -> None:
    augment = {**PLAIN, "view2": {"solarize_p": 1.0}}
    views = augmentation(augment, n_global=2, n_local=1)(white(8, 32), seeded())
    assert [bool((v < 0.01).all()) for v in views] == [False, True, False]


def test_group_settings_reach_their_group_and_views_override_groups() -> None:
    augment = {"global": {"blur_p": 0.7}, "local": {"crop_size": 12}, "view1": {"blur_p": 0.1}}
    specs = augmentation(augment, size=64, n_global=2, n_local=2).views
    assert [s.blur_p for s in specs[:2]] == [0.1, 0.7]
    assert [s.size for s in specs] == [64, 64, 12, 12]


def test_given_normalisation_is_the_one_used() -> None:
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=seeded())
    whole = {**PLAIN, "scale": (1, 1), "ratio": (1, 1)}
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    (given,) = augmentation({**whole, "mean": mean, "std": std}, 16, n_global=1)(images)
    expected = (images / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(given, expected, atol=1e-5, rtol=0)
    dataset = {k: v for k, v in whole.items() if k not in ("mean", "std")}
    (default,) = augmentation(dataset, 16, "stl10", n_global=1)(images)
    stl = DataRecipe("stl10", 16, 3).preset
    expected = (images / 255 - torch.tensor(stl.mean).view(3, 1, 1)) / torch.tensor(stl.std).view(
        3, 1, 1
    )
    torch.testing.assert_close(default, expected, atol=1e-5, rtol=0)


def test_strength_sets_all_four_jitter_spans_and_explicit_values_win() -> None:
    (spec,) = augmentation({"strength": 1.0, "hue": 0.05}, n_global=1).views
    assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.8, 0.8, 0.8, 0.05)


def test_given_settings_win_over_the_recipes_at_every_level() -> None:
    byol = augmentation({"recipe": "byol", "solarize_p": 0.0}, size=96).views
    assert [s.solarize_p for s in byol] == [0.0, 0.0]  # given "all" beats the recipe's view2
    assert [s.blur_p for s in byol] == [1.0, 0.1]


def test_views_are_numbered_from_one_and_must_exist() -> None:
    with pytest.raises(ValueError, match=r"augment\.view3: there are only 2 views"):
        augmentation({"view3": {"blur_p": 1.0}})
    with pytest.raises(ValueError, match="unknown augment key 'view0'"):
        normalize_augment({"view0": {"blur_p": 1.0}})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("recipe", "simclr2", "unknown augment recipe 'simclr2'"),
        ("global.blurr_p", "1", "unknown augment key 'global.blurr_p'"),
        ("scale", "0.2", r"augment.scale='0.2': expected two numbers"),
        ("local.crop_size", "9.5", "expected a whole number"),
        ("jitter_mode", "exact", "expected one of torchvision, linear"),
    ],
)
def test_bad_keys_and_values_are_one_line_errors(key: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        set_augment_key({}, key, value)


def test_values_out_of_range_name_the_view() -> None:
    with pytest.raises(ValueError, match=r"view2 \(global\): flip_p must be in \[0, 1\]"):
        augmentation({"view2": {"flip_p": 1.5}})
    with pytest.raises(ValueError, match="blur kernel 23 does not fit size 8"):
        augmentation({"blur_p": 1.0, "blur_kernel": 23, "local": {"crop_size": 8}}, n_local=1)


def test_text_values_parse_like_yaml_values() -> None:
    text = normalize_augment({"global.scale": "(0.2, 1)", "blur_kernel": "auto", "mean": "0.5,0.5"})
    assert text == {"global": {"scale": (0.2, 1.0)}, "blur_kernel": None, "mean": (0.5, 0.5)}
    assert normalize_augment("byol") == {"recipe": "byol"}


SEEDS = {  # seed_recipes.md, view by view: (scale, jitter spans, jitter p, gray, blur, kernel,
    # solarize, mean, std)
    "seed000": [((0.08, 1.0), (0.8, 0.8, 0.8, 0.2), 0.8, 0.2, 0.5, 23, 0.0, "imagenet")] * 2,
    "seed002": [((0.2, 1.0), (0.8, 0.8, 0.8, 0.2), 0.8, 0.2, 0.5, 23, 0.0, "imagenet")] * 2,
    "seed003_stl10": [((0.08, 1.0), (0.5, 0.5, 0.5, 0.1), 0.8, 0.2, 1.0, 9, 0.0, "half")] * 2,
    "seed003_supcon": [((0.2, 1.0), (0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.0, 23, 0.0, "cifar")] * 2,
}
STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
}


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_recipes_hold_the_seeds_values(name: str) -> None:
    for spec, want in zip(augmentation(name, size=224).views, SEEDS[name], strict=True):
        scale, spans, jitter_p, gray, blur, kernel, solarize, stats = want
        assert spec.scale == scale
        assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == pytest.approx(spans)
        assert (spec.jitter_p, spec.grayscale_p, spec.blur_p) == (jitter_p, gray, blur)
        assert (spec.kernel_size, spec.blur_sigma, spec.solarize_p) == (kernel, (0.1, 2), solarize)
        assert (spec.mean, spec.std, spec.flip_p) == (*STATS[stats], 0.5)


def test_multicrop_seed_recipes_set_both_groups() -> None:
    solo = augmentation("seed002_multicrop", size=224, n_global=2, n_local=6).views
    assert [(s.size, s.scale) for s in solo] == [(224, (0.14, 1.0))] * 2 + [(96, (0.05, 0.14))] * 6
    for size, local in ((96, 41), (32, 13)):  # seed 004: 3/7 of the global crop
        specs = augmentation("seed004", size=size, n_global=2, n_local=4).views
        assert [s.size for s in specs] == [size] * 2 + [local] * 4
        assert [(s.scale, s.solarize_p) for s in specs] == [((0.1, 1.0), 0.2)] * 2 + [
            ((0.05, 1.0), 0.0)
        ] * 4
        assert all(s.blur_p == 1.0 and s.kernel_size == 9 for s in specs)
        assert specs[0].brightness == 0.8 and specs[0].hue == pytest.approx(0.2)
    assert set(RECIPES) >= {"simclr", "byol", "seed000", "seed002", "seed004"}


def test_resolved_views_print_as_plain_values() -> None:
    views = DataRecipe("cifar10", 224, 3).views("seed004", n_global=2, n_local=1)
    assert [(v["view"], v["group"], v["crop_size"]) for v in views] == [
        (1, "global", 224),
        (2, "global", 224),
        (3, "local", 96),
    ]
    assert views[0]["scale"] == [0.1, 1.0] and views[0]["blur_kernel"] == 9
    assert all(isinstance(v, int | float | str | list) for view in views for v in view.values())


def test_the_local_size_option_beats_the_recipe_and_augment_beats_it() -> None:
    def local_sizes(augment, local_size=None) -> list[int]:
        specs = DataRecipe("imagenet", 224, 3).augmentation(
            augment, n_global=2, n_local=2, local_size=local_size
        )
        return [s.size for s in specs.views][2:]

    assert local_sizes("seed002_multicrop") == [96, 96]
    assert local_sizes("seed002_multicrop", 64) == [64, 64]
    assert local_sizes({"recipe": "seed002_multicrop", "view4": {"crop_size": 32}}, 64) == [64, 32]
