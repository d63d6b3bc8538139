"""Random resized crops from whole images of different sizes padded into one batch: each box is
drawn inside its own image, covers all of it over many draws, and sampling never reads the
padding; the boxes follow torchvision's RandomResizedCrop.get_params."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from contrastkit.data.augment import BatchAugment, ViewSpec, _crop_boxes, resized_crop
from contrastkit.data.batch_decode import pad_images

WIDE, TALL = (24, 64), (60, 18)  # (height, width)
_N_DRAWS = 36  # columns of one view's uniform draws (augment.py)


def _padded_pair(low: int = 0, high: int = 100, padding: int = 255) -> tuple[torch.Tensor, ...]:
    """A wide and a tall image of values in [low, high], padded with ``padding``."""
    gen = torch.Generator().manual_seed(0)
    images = [
        torch.randint(low, high + 1, (3, *hw), generator=gen, dtype=torch.uint8)
        for hw in (WIDE, TALL)
    ]
    padded, sizes = pad_images(images, torch.device("cpu"))
    for slot, (h, w) in zip(padded, sizes.tolist(), strict=True):
        slot[:, h:, :] = padding
        slot[:, :, w:] = padding
    return padded, sizes, *images


def test_padding_keeps_each_image_in_its_corner_with_its_size() -> None:
    padded, sizes, wide, tall = _padded_pair(padding=0)
    assert padded.shape == (2, 3, TALL[0], WIDE[1])
    assert sizes.tolist() == [list(WIDE), list(TALL)]
    assert torch.equal(padded[0, :, : WIDE[0], : WIDE[1]], wide)
    assert torch.equal(padded[1, :, : TALL[0], : TALL[1]], tall)
    assert padded[0, :, WIDE[0] :].eq(0).all() and padded[1, :, :, TALL[1] :].eq(0).all()


def test_boxes_stay_inside_and_cover_each_whole_image() -> None:
    spec = ViewSpec(size=16)
    n = 4000
    sizes = torch.tensor([WIDE, TALL]).repeat(n, 1)
    draws = torch.rand(2 * n, _N_DRAWS, generator=torch.Generator().manual_seed(1))
    boxes = _crop_boxes(draws, sizes[:, 0], sizes[:, 1], spec)
    x0, y0, w, h = boxes.unbind(1)
    height, width = sizes[:, 0].float(), sizes[:, 1].float()
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= width + 1e-4).all() and (y0 + h <= height + 1e-4).all()
    for image in range(2):  # the union of the boxes is the whole image
        rows = slice(image, None, 2)
        assert x0[rows].min() < 0.2 and y0[rows].min() < 0.2
        assert (width - x0 - w)[rows].min() < 0.2 and (height - y0 - h)[rows].min() < 0.2
        # and the boxes are drawn from each image's own size: the largest spans all of it
        assert w[rows].max() > 0.99 * width[image] or h[rows].max() > 0.99 * height[image]


def test_views_never_read_the_padding() -> None:
    """Images hold values <= 100, the padding 255: any bilinear weight on it would show."""
    padded, sizes, *_ = _padded_pair()
    copies = 256
    batch, batch_sizes = padded.repeat(copies, 1, 1, 1), sizes.repeat(copies, 1)
    spec = ViewSpec(size=12, jitter_p=0.0, grayscale_p=0.0, scale=(0.02, 1.0), ratio=(0.2, 5.0))
    views = BatchAugment([spec, spec])(batch, torch.Generator().manual_seed(2), sizes=batch_sizes)
    for view in views:
        assert view.mul(255).max() <= 100 + 1e-3
    unbounded = BatchAugment([spec])(batch, torch.Generator().manual_seed(2))[0]
    assert unbounded.mul(255).max() > 100  # the same crops without sizes do read the padding


def test_padded_crop_equals_the_crop_of_the_image_alone() -> None:
    padded, sizes, wide, tall = _padded_pair(padding=0)
    spec = ViewSpec(size=(10, 14))
    draws = torch.rand(2, _N_DRAWS, generator=torch.Generator().manual_seed(3))
    boxes = _crop_boxes(draws, sizes[:, 0], sizes[:, 1], spec)
    flip = torch.tensor([False, True])
    together = resized_crop(padded.float(), boxes, (10, 14), flip=flip, sizes=sizes)
    for i, image in enumerate((wide, tall)):
        alone = resized_crop(image[None].float(), boxes[i : i + 1], (10, 14), flip=flip[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, atol=0.3, rtol=0)  # of 255


def _torchvision_box(
    height: int, width: int, u_area: list[float], u_ratio: list[float], u_x: float, u_y: float
) -> tuple[float, float, float, float]:
    """RandomResizedCrop.get_params's logic (torchvision 0.29) with its random numbers given,
    and without its rounding to whole pixels: the reference for one sample."""
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for k in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u_area[k])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u_ratio[k])
        w, h = math.sqrt(target_area * aspect), math.sqrt(target_area / aspect)
        if 0 < w <= width and 0 < h <= height:
            return (width - w) * u_x, (height - h) * u_y, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, width / min(ratio)
    elif in_ratio > max(ratio):
        h, w = height, height * max(ratio)
    else:
        w, h = width, height
    return (width - w) * u_x, (height - h) * u_y, w, h


def test_per_sample_boxes_follow_get_params_exactly() -> None:
    spec = ViewSpec(size=16)
    sides = torch.tensor([WIDE, TALL, (40, 40), (9, 200), (300, 7)]).repeat(200, 1)
    draws = torch.rand(
        len(sides), _N_DRAWS, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    boxes = _crop_boxes(draws, sides[:, 0], sides[:, 1], spec)
    d = draws.tolist()
    expected = [
        _torchvision_box(h, w, row[0:10], row[10:20], row[20], row[21])
        for (h, w), row in zip(sides.tolist(), d, strict=True)
    ]
    torch.testing.assert_close(
        boxes, torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=0
    )


@pytest.mark.parametrize("hw", [WIDE, TALL])
def test_box_distribution_matches_torchvision_get_params(hw: tuple[int, int]) -> None:
    """Against torchvision itself: the quantiles of box area and aspect over many draws."""
    height, width = hw
    n = 4000
    torch.manual_seed(5)
    params = [
        RandomResizedCrop.get_params(torch.empty(1, height, width), (0.08, 1.0), (3 / 4, 4 / 3))
        for _ in range(n)
    ]
    tv = np.array([(h * w / (height * width), w / h) for _, _, h, w in params])
    sides = torch.tensor([hw]).repeat(n, 1)
    draws = torch.rand(n, _N_DRAWS, generator=torch.Generator().manual_seed(6))
    boxes = _crop_boxes(draws, sides[:, 0], sides[:, 1], ViewSpec(size=16)).numpy()
    ours = np.stack([boxes[:, 2] * boxes[:, 3] / (height * width), boxes[:, 2] / boxes[:, 3]], 1)
    quantiles = np.linspace(0.05, 0.95, 19)
    for column, tolerance in ((0, 0.04), (1, 0.12)):  # torchvision rounds to whole pixels
        np.testing.assert_allclose(
            np.quantile(ours[:, column], quantiles),
            np.quantile(tv[:, column], quantiles),
            atol=tolerance,
        )
