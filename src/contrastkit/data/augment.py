"""Batched contrastive-view augmentation with independent random parameters per sample.

torchvision's v2 transforms draw one set of parameters per call, so applied to a batch they give
every sample the same crop, flip and jitter: useless for contrastive views. This module runs the
SimCLR/BYOL recipe on a whole uint8 batch on the images' device instead, vectorised:

* crop + flip + resize: one ``F.grid_sample`` on an affine grid per view (bilinear, no
  antialiasing; crop boxes are continuous rather than rounded to whole pixels);
* colour jitter (brightness, contrast, saturation, hue in a random order per sample) and
  grayscale, in one of two modes. ``"torchvision"``: ColorJitter's own steps (HSV hue, a clamp
  after each step), batched, equal to torchvision per pixel given the same factors.
  ``"linear"``: all steps are linear in RGB, so they compose into one 3×3 matrix + offset per
  sample in a single batched matmul; hue rotates the chroma plane of YIQ instead of shifting HSV
  hue, and values are clamped once at the end;
* Gaussian blur: a separable grouped convolution with a per-sample kernel, run only on the
  samples drawn for blurring;
* solarize: ``torch.where``; normalisation by per-dataset mean/std.

Own code rather than kornia because it measured faster (``benchmarks/augment.py``, 2 CPU
cores, batch 256, two SimCLR views, 32 px): in the linear mode ~50k views/s against ~5.5k for
kornia, ~1.9k for torchvision v2 in a per-sample loop and ~2.7k for torchvision's per-image PIL
pipeline through a DataLoader with 2 workers; in the exact mode 27–32k views/s, 4.2–4.9× that
PIL pipeline (at 96 px with blur 1.6–2.7×).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..runtime import waits_passively

__all__ = [
    "DEFAULT_JITTER_MODE",
    "JITTER_MODES",
    "BatchAugment",
    "ViewSpec",
    "colour_affine",
    "resized_crop",
    "torchvision_jitter",
]

JITTER_MODES = ("torchvision", "linear")
"""Colour jitter as torchvision's ColorJitter computes it, or as one affine map per sample."""
DEFAULT_JITTER_MODE = "torchvision"
"""The default mode, chosen by measurement (benchmarks/README.md, jitter_modes.py)."""

# Rec. 601 luma; the first row of RGB->YIQ, so hue rotation keeps grayscale fixed.
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = (_LUMA, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
# YIQ^-1 · (quarter turn of the I-Q plane) · YIQ: the sine part of an RGB hue rotation.
_YIQ = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
_QUARTER_TURN = torch.tensor([[0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)
_HUE_SINE = (torch.linalg.inv(_YIQ) @ _QUARTER_TURN @ _YIQ).float()
_CROP_ATTEMPTS = 10  # as torchvision's RandomResizedCrop
_TV_LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
_PAD_MARGIN = 1e-3  # pixels kept between a padded image's edge samples and its padding
_MIN_CHROMA = 1e-12  # grey pixels divide 0 by this: any hue, the same grey
_CPU_GROUP_PIXELS = 128 * 32 * 32  # output pixels per sample group on a CPU (measured at 32 px)
_MIN_GROUP = 16  # samples per group at least, so large views are not transformed one by one

# Columns of the per-sample uniform draws of one view (one ``torch.rand`` call per view).
_AREA = slice(0, _CROP_ATTEMPTS)
_LOG_RATIO = slice(_CROP_ATTEMPTS, 2 * _CROP_ATTEMPTS)
_X0, _Y0, _FLIP, _JITTER, _FACTORS = 20, 21, 22, 23, slice(24, 28)
_ORDER = slice(28, 32)  # argsorted: a random order of the four jitter steps
_GRAY, _BLUR, _SIGMA, _SOLARIZE = 32, 33, 34, 35
_N_DRAWS = 36
_CONTRAST = 1  # index of contrast in a jitter order: brightness, contrast, saturation, hue


@dataclass(frozen=True)
class ViewSpec:
    """Random augmentation of one view; defaults are SimCLR's at colour strength 0.5.

    ``size`` is the output side (or (height, width)). ``scale`` is the crop area as a fraction of
    the input, ``ratio`` its aspect-ratio range. Jitter factors are drawn uniformly from
    [max(0, 1 - b), 1 + b] for brightness, contrast and saturation, hue from [-hue, hue] of a
    full turn. ``jitter_mode`` is ``"torchvision"`` (ColorJitter's steps: HSV hue, clamping after
    each) or ``"linear"`` (one affine map, YIQ hue, one clamp). ``blur_kernel`` defaults to the
    odd integer near 10% of the output size. ``mean``/``std`` normalise the view (None: left in
    [0, 1], unless ``BatchAugment`` is given statistics).
    """

    size: int | tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    jitter_mode: str = DEFAULT_JITTER_MODE
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if min(self.hw) < 1:
            raise ValueError(f"size must be positive, got {self.size}")
        if not 0.0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must satisfy 0 < low <= high, got {self.scale}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if min(self.brightness, self.contrast, self.saturation) < 0.0:
            raise ValueError("brightness, contrast and saturation must be >= 0")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        if self.blur_kernel is not None and (self.blur_kernel < 1 or self.blur_kernel % 2 == 0):
            raise ValueError(f"blur_kernel must be odd and positive, got {self.blur_kernel}")
        if self.blur_p > 0 and not 0 < self.kernel_size // 2 < min(self.hw):
            raise ValueError(f"blur kernel {self.kernel_size} does not fit size {self.size}")
        if self.jitter_mode not in JITTER_MODES:
            raise ValueError(f"jitter_mode must be one of {JITTER_MODES}, got {self.jitter_mode!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.std is not None and (len(self.mean) != len(self.std) or min(self.std) <= 0):
            raise ValueError(f"std must be positive with one value per mean, got {self.std}")

    @property
    def hw(self) -> tuple[int, int]:
        """Output (height, width)."""
        return (self.size, self.size) if isinstance(self.size, int) else self.size

    @property
    def kernel_size(self) -> int:
        """Blur kernel side: ``blur_kernel`` or the odd integer near 10% of the output size."""
        if self.blur_kernel is not None:
            return self.blur_kernel
        return max(3, int(0.1 * max(self.hw)) | 1)

    @property
    def has_colour(self) -> bool:
        """Whether jitter or grayscale can change a sample's colours."""
        jitter = max(self.brightness, self.contrast, self.saturation, self.hue) > 0.0
        return (self.jitter_p > 0.0 and jitter) or self.grayscale_p > 0.0


class BatchAugment(nn.Module):
    """Turn a uint8 batch (B, C, H, W) into float32 views, one random draw per sample and view.

    Returns one (B, C, h, w) tensor per view spec, on the input's device, normalised with the
    spec's ``mean``/``std``, else with the ``mean``/``std`` given here, else left in [0, 1].
    Parameters are drawn from ``generator`` (on its device; the global CPU generator when
    None), so the same generator state gives the same views, on any device. A CUDA generator
    costs one device sync per blurred view, and one per view in the torchvision jitter mode (to
    pick the samples to blur or to shift hue). C must be 1 or 3; one-channel images skip
    saturation, hue and grayscale.
    """

    def __init__(
        self,
        views: Sequence[ViewSpec],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not views:
            raise ValueError("need at least one view")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.views = tuple(
            replace(spec, mean=tuple(mean), std=tuple(std))
            if spec.mean is None and mean is not None and std is not None
            else spec
            for spec in views
        )
        for index, spec in enumerate(self.views):  # buffers follow the module to its device
            stats = [None, None] if spec.mean is None else [spec.mean, spec.std]
            for name, values in zip(("mean", "std"), stats, strict=True):
                tensor = None if values is None else torch.tensor(values).view(1, -1, 1, 1)
                self.register_buffer(f"_{name}{index}", tensor, persistent=False)

    def forward(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        sizes: Tensor | None = None,
    ) -> list[Tensor]:
        """One float32 tensor per view spec; ``images`` is a uint8 (B, C, H, W) batch.

        ``sizes`` (B, 2) gives each sample's own (height, width) when whole images of different
        sizes travel padded in one batch, each in its top-left corner: every crop box is then
        drawn inside its own image and sampling never reads the padding.
        """
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"expected a uint8 (B, C, H, W) batch, got {images.dtype} {images.shape}"
            )
        if sizes is not None and sizes.shape != (images.shape[0], 2):  # values: no device sync
            raise ValueError(f"sizes must be ({images.shape[0]}, 2), got {tuple(sizes.shape)}")
        channels = images.shape[1]
        if channels not in (1, 3):
            raise ValueError(f"expected 1 or 3 channels, got {channels}")
        for spec in self.views:
            if spec.mean is not None and len(spec.mean) not in (1, channels):
                raise ValueError(f"mean/std have {len(spec.mean)} channels, images {channels}")
        with _augment_threads(images.device):
            pixels = images.to(torch.float32, memory_format=torch.contiguous_format)
            return [self._view(pixels, index, generator, sizes) for index in range(len(self.views))]

    def _view(
        self, pixels: Tensor, index: int, generator: torch.Generator | None, sizes: Tensor | None
    ) -> Tensor:
        """View ``index`` of float pixels in [0, 255] (each sample ``sizes`` large, if given).

        The random draws are made for the whole batch; on a CPU the samples are then transformed
        in groups whose views fit in a core's L2 cache (every step is per sample, so the result
        is the same): at 32 px, batch 256 took 23–25 ms in one piece and 8.2 ms per 128.
        """
        batch = pixels.shape[0]
        draw_device = generator.device if generator is not None else torch.device("cpu")
        draws = torch.rand(batch, _N_DRAWS, generator=generator, device=draw_device)
        group = batch
        if pixels.device.type == "cpu":
            spec = self.views[index]
            group = max(_MIN_GROUP, _CPU_GROUP_PIXELS // (spec.hw[0] * spec.hw[1]))
        if group >= batch:
            return self._transform(pixels, draws, index, sizes)
        return torch.cat(
            [
                self._transform(
                    pixels[start : start + group],
                    draws[start : start + group],
                    index,
                    None if sizes is None else sizes[start : start + group],
                )
                for start in range(0, batch, group)
            ]
        )

    def _transform(self, pixels: Tensor, draws: Tensor, index: int, sizes: Tensor | None) -> Tensor:
        """View ``index`` of float pixels in [0, 255] from their uniform ``draws`` (B, _N_DRAWS)."""
        spec = self.views[index]
        batch, channels, height, width = pixels.shape
        # Blur runs only on its samples; pick them where the draws live, so a CPU generator
        # needs no device sync (nor do the copies, which wait for no queued work).
        blurred = (draws[:, _BLUR] < spec.blur_p).nonzero().squeeze(1)
        hue_steps = None
        if spec.has_colour and spec.jitter_mode == "torchvision" and channels == 3:
            _, hue, order, _ = _colour_params(draws, spec)
            turns = (order == 3) & (hue != 0).unsqueeze(1)  # (B, step): hue's turn
            hue_steps = [
                turns[:, k].nonzero().squeeze(1).to(pixels.device, non_blocking=True)
                for k in range(4)
            ]
        blurred, draws = (t.to(pixels.device, non_blocking=True) for t in (blurred, draws))

        if sizes is not None:
            sizes = sizes.to(pixels.device)
            height, width = sizes[:, 0], sizes[:, 1]
        boxes = _crop_boxes(draws, height, width, spec)
        out = resized_crop(pixels, boxes, spec.hw, flip=draws[:, _FLIP] < spec.flip_p, sizes=sizes)
        if spec.has_colour and spec.jitter_mode == "linear":
            factors, hue, order, gray = _colour_params(draws, spec)
            mean = out.mean(dim=(2, 3)).mul_(1.0 / 255.0)
            matrix, offset = colour_affine(mean, factors, hue, order, gray)
            flat = out.view(batch, channels, -1)
            out = torch.bmm(matrix / 255.0, flat).add_(offset.unsqueeze(2)).clamp_(0.0, 1.0)
            out = out.view(batch, channels, *spec.hw)
        elif spec.has_colour:
            factors, hue, order, gray = _colour_params(draws, spec)
            out = out.mul_(1.0 / 255.0)
            out = torchvision_jitter(out, factors, hue, order, gray, hue_steps)
        else:
            out.mul_(1.0 / 255.0)
        if blurred.numel():
            lo, hi = spec.blur_sigma
            sigma = lo + (hi - lo) * draws[blurred, _SIGMA]
            out.index_copy_(0, blurred, _gaussian_blur(out[blurred], sigma, spec.kernel_size))
        if spec.solarize_p > 0.0:
            chosen = (draws[:, _SOLARIZE] < spec.solarize_p).view(-1, 1, 1, 1)
            out = torch.where(chosen & (out >= spec.solarize_threshold), 1.0 - out, out)
        mean, std = getattr(self, f"_mean{index}"), getattr(self, f"_std{index}")
        if mean is not None:
            out.sub_(mean.to(out.device)).div_(std.to(out.device))
        return out


@contextmanager
def _augment_threads(device: torch.device) -> Iterator[None]:
    """One torch thread on a CPU whose OpenMP threads wait passively: each of the augmentation's
    many small parallel regions then wakes a sleeping thread, and two SimCLR views of 256 at
    32 px took 49 ms on two threads against 24 ms on one (16 ms on two when threads spin)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or not waits_passively():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def resized_crop(
    images: Tensor,
    boxes: Tensor,
    size: int | tuple[int, int],
    flip: Tensor | None = None,
    sizes: Tensor | None = None,
) -> Tensor:
    """Crop each image to its box, mirror it where ``flip``, and resize it bilinearly to ``size``.

    ``images`` is float (B, C, H, W); ``boxes`` is (B, 4) as (x0, y0, width, height) in pixel
    units, where pixel (i, j) covers [j, j + 1] × [i, i + 1]. One ``grid_sample`` does all three.
    ``sizes`` (B, 2): each image's (height, width) in the top-left corner of a padded batch;
    sampling is clamped inside it, as border padding would clamp it for the image alone.
    The sampling grid is the affine one of ``F.affine_grid``, built from its separable x and y
    parts: on CPU, ``affine_grid``'s batched matmul took longer than the sampling itself.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x0, y0, box_w, box_h = boxes.to(images.dtype).unbind(1)
    own_h, own_w = (None, None) if sizes is None else sizes.to(images.dtype).unbind(1)
    grid_x = _sample_coords(x0, box_w, images.shape[3], out_w, flip, own_w)
    grid_y = _sample_coords(y0, box_h, images.shape[2], out_h, None, own_h)
    shape = (len(images), out_h, out_w, 1)
    grid = torch.cat(
        [grid_x[:, None, :, None].expand(shape), grid_y[:, :, None, None].expand(shape)], 3
    )
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _sample_coords(
    start: Tensor,
    length: Tensor,
    extent: int,
    n: int,
    flip: Tensor | None,
    own: Tensor | None = None,
) -> Tensor:
    """(B, n) grid_sample coordinates of n cell centres spread over [start, start + length].

    Reversed where ``flip``; ``extent`` is the input side (align_corners=False convention).
    ``own`` (B,): each image's side inside a padded batch; coordinates stay within its first
    and last pixel centres (a hair inside, so the padding gets no bilinear weight at all).
    """
    centres = (torch.arange(n, device=start.device, dtype=start.dtype) + 0.5) / n
    if flip is not None:
        centres = torch.where(flip.unsqueeze(1), 1.0 - centres, centres)
    pixels = start.unsqueeze(1) + length.unsqueeze(1) * centres
    if own is not None:
        pixels = pixels.clamp(min=0.5).minimum((own - 0.5 - _PAD_MARGIN).unsqueeze(1))
    return pixels * (2.0 / extent) - 1.0


def _crop_boxes(draws: Tensor, height: int | Tensor, width: int | Tensor, spec: ViewSpec) -> Tensor:
    """RandomResizedCrop boxes (x0, y0, w, h): torchvision's 10 tries, then its centre fallback.

    ``height`` and ``width`` are the input's sides, or (B,) tensors of each sample's own sides.
    """
    if isinstance(height, Tensor) and isinstance(width, Tensor):
        height, width = height.to(draws.dtype), width.to(draws.dtype)
        h_col, w_col = height.unsqueeze(1), width.unsqueeze(1)
    else:
        h_col, w_col = height, width
    log_lo, log_hi = math.log(spec.ratio[0]), math.log(spec.ratio[1])
    area = h_col * w_col * (spec.scale[0] + (spec.scale[1] - spec.scale[0]) * draws[:, _AREA])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * draws[:, _LOG_RATIO])
    box_w, box_h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (box_w <= w_col) & (box_h <= h_col)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    box_w, box_h = box_w.gather(1, first).squeeze(1), box_h.gather(1, first).squeeze(1)

    found = fits.any(dim=1)
    if isinstance(height, Tensor) and isinstance(width, Tensor):
        in_ratio = width / height
        fallback_w = torch.where(in_ratio <= spec.ratio[1], width, height * spec.ratio[1])
        fallback_h = torch.where(in_ratio >= spec.ratio[0], height, width / spec.ratio[0])
        box_w = torch.where(found, box_w, fallback_w)
        box_h = torch.where(found, box_h, fallback_h)
    else:
        in_ratio = width / height
        fallback_w = width if in_ratio <= spec.ratio[1] else height * spec.ratio[1]
        fallback_h = height if in_ratio >= spec.ratio[0] else width / spec.ratio[0]
        box_w = torch.where(found, box_w, torch.full_like(box_w, fallback_w))
        box_h = torch.where(found, box_h, torch.full_like(box_h, fallback_h))
    x0 = (width - box_w) * draws[:, _X0]
    y0 = (height - box_h) * draws[:, _Y0]
    return torch.stack([x0, y0, box_w, box_h], dim=1)


def colour_affine(
    mean: Tensor, factors: Tensor, hue: Tensor, order: Tensor, grayscale: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-sample (matrix, offset) of colour jitter then optional grayscale, on [0, 1] pixels.

    ``mean`` is each image's mean colour (B, C) with C in {1, 3}; ``factors`` the brightness,
    contrast and saturation factors (B, 3); ``hue`` the hue shift in turns (B,); ``order`` a
    permutation of (brightness, contrast, saturation, hue) per sample (B, 4); ``grayscale`` a
    (B,) mask. Brightness, saturation, hue and grayscale are linear maps; contrast blends
    towards the mean luma, an affine map whose offset follows from ``mean`` through the steps
    before it. So every order composes into one affine map, which without intermediate
    clamping equals torchvision's sequence of adjustments (hue aside: it rotates YIQ chroma).
    Saturation, hue and grayscale leave one-channel images unchanged.
    """
    batch, channels = mean.shape
    device = mean.device
    eye = torch.eye(channels, device=device)
    luma = torch.tensor(_LUMA if channels == 3 else (1.0,), device=device)
    to_gray = torch.ones(channels, 1, device=device) * luma  # every channel <- luma
    brightness, contrast, saturation = factors.unbind(1)
    steps = torch.stack(
        [
            brightness.view(-1, 1, 1) * eye,
            contrast.view(-1, 1, 1) * eye,
            saturation.view(-1, 1, 1) * eye + (1.0 - saturation.view(-1, 1, 1)) * to_gray,
            _hue_matrices(hue, to_gray) if channels == 3 else eye.expand(batch, 1, 1),
        ],
        dim=1,
    )  # (B, 4 steps, C, C)
    rows = torch.arange(batch, device=device)
    matrix = eye.expand(batch, channels, channels)
    offset = torch.zeros(batch, channels, device=device)
    for step in range(4):
        op = order[:, step]
        current_luma = (torch.einsum("bij,bj->bi", matrix, mean) + offset) @ luma
        blend = torch.where(op == _CONTRAST, (1.0 - contrast) * current_luma, 0.0)
        step_matrix = steps[rows, op]
        matrix = step_matrix @ matrix
        offset = torch.einsum("bij,bj->bi", step_matrix, offset) + blend.unsqueeze(1)
    gray_matrix = torch.where(grayscale.view(-1, 1, 1), to_gray, eye)
    return gray_matrix @ matrix, torch.einsum("bij,bj->bi", gray_matrix, offset)


def torchvision_jitter(
    images: Tensor,
    factors: Tensor,
    hue: Tensor,
    order: Tensor,
    grayscale: Tensor,
    hue_steps: Sequence[Tensor] | None = None,
) -> Tensor:
    """Colour jitter then optional grayscale as torchvision computes them, batched per sample.

    ``images`` are float (B, C, H, W) in [0, 1]; the other arguments as in ``colour_affine``.
    Each of the four steps runs in the sample's own order and is clamped to [0, 1], as
    ``ColorJitter`` on a float tensor: brightness scales, contrast blends with the mean
    grayscale, saturation with the grayscale image, hue shifts the HSV hue. Grayscale uses
    torchvision's weights (0.2989, 0.587, 0.114). One step per sample per pass: the linear
    three share one fused expression; hue runs on the samples whose turn it is: ``hue_steps[k]``
    (the indices of the samples shifting hue in step k; found here when None, at the cost of a
    device sync on CUDA).
    """
    channels = images.shape[1]
    out = images
    for step in range(4):
        op = order[:, step]
        chosen = [torch.where(op == k, factors[:, k], 1.0).view(-1, 1, 1, 1) for k in range(3)]
        brightness, contrast, saturation = chosen
        gray = _tv_gray(out)
        mean = gray.mean(dim=(2, 3), keepdim=True)
        out = (
            out * (brightness * contrast * saturation)
            + (1.0 - contrast) * mean
            + (1.0 - saturation) * gray
        ).clamp_(0.0, 1.0)
        if channels == 3:
            turn = _hue_turns(op, hue) if hue_steps is None else hue_steps[step]
            if turn.numel():
                shifted = _shift_hue(out[turn], hue[turn])
                out = out.index_copy(0, turn, shifted)
    return torch.where(grayscale.view(-1, 1, 1, 1), _tv_gray(out).expand_as(out), out)


def _tv_gray(images: Tensor) -> Tensor:
    """(B, 1, H, W) grayscale with torchvision's weights; one-channel images as they are."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    return (_TV_LUMA[0] * r + _TV_LUMA[1] * g + _TV_LUMA[2] * b).unsqueeze(1)


def _hue_turns(op: Tensor, hue: Tensor) -> Tensor:
    """Indices of the samples whose hue step is ``op`` (its column of the order) and nonzero."""
    return ((op == 3) & (hue != 0)).nonzero().squeeze(1)


def _shift_hue(images: Tensor, turns: Tensor) -> Tensor:
    """Add ``turns`` (B,) to the HSV hue of RGB ``images`` in [0, 1]: torchvision's adjust_hue.

    Shifting hue keeps value (the max channel) and chroma (max − min), so the closed form of
    torchvision's six-sector table serves, in a few passes instead of its chains of selections:

        6·hue = 2·i + (x[i+1] − x[i+2]) / (max − min)    (i: the first channel holding the max,
                                                           indices mod 3; ties give the same hue)
        m_k = (n_k + 6·(hue + turns)) mod 6,             n = (5, 3, 1) for R, G, B
        c_k = min + (max − min)·clamp(|m_k − 2| − 1, 0, 1)

    Grey pixels (max = min) keep their value whatever the hue, as in torchvision.
    """
    maxc, first = images.max(dim=1, keepdim=True)
    minc = images.amin(dim=1, keepdim=True)
    chroma = maxc - minc
    following = images.roll(-1, dims=1) - images.roll(-2, dims=1)  # g − b, b − r, r − g
    sector = following.gather(1, first).div_(chroma.clamp(min=_MIN_CHROMA))
    sector.add_(2.0 * first + 6.0 * turns.view(-1, 1, 1, 1))
    # n = 5, 3, 1: R, G, B's places on the hue hexagon, made where the images are (no copy)
    offsets = torch.arange(5.0, 0.0, -2.0, dtype=images.dtype, device=images.device)
    position = (sector + offsets.view(1, 3, 1, 1)).remainder_(6.0)
    weight = position.sub_(2.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
    return torch.addcmul(minc, chroma, weight)


def _colour_params(draws: Tensor, spec: ViewSpec) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Jitter factors, hue shifts, jitter order and grayscale mask from the uniform draws."""
    jitter = (draws[:, _JITTER] < spec.jitter_p).unsqueeze(1)
    spans = torch.tensor([spec.brightness, spec.contrast, spec.saturation], device=draws.device)
    lo, hi = (1.0 - spans).clamp(min=0.0), 1.0 + spans
    uniform = draws[:, _FACTORS]
    factors = torch.where(jitter, lo + (hi - lo) * uniform[:, :3], 1.0)
    hue = torch.where(jitter[:, 0], (2.0 * uniform[:, 3] - 1.0) * spec.hue, 0.0)
    return factors, hue, draws[:, _ORDER].argsort(dim=1), draws[:, _GRAY] < spec.grayscale_p


def _hue_matrices(turns: Tensor, to_gray: Tensor) -> Tensor:
    """(B, 3, 3) RGB maps rotating the YIQ chroma plane by ``turns`` of a full circle.

    In RGB the rotation is ``to_gray + cos·(I - to_gray) + sin·_HUE_SINE``: luma is kept, chroma
    rotated, and a zero angle gives the identity (up to rounding).
    """
    angle = 2.0 * math.pi * turns.view(-1, 1, 1)
    eye = torch.eye(3, device=turns.device)
    sine = _HUE_SINE.to(turns.device)
    return to_gray + torch.cos(angle) * (eye - to_gray) + torch.sin(angle) * sine


def _gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with one sigma per image, reflect-padded (as torchvision)."""
    batch, channels, height, width = images.shape
    radius = kernel_size // 2
    taps = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - radius
    kernel = torch.exp(-(taps**2) / (2.0 * sigma.unsqueeze(1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    groups = batch * channels
    x = F.pad(images.reshape(1, groups, height, width), (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(groups, 1, kernel_size, 1), groups=groups)
    x = F.conv2d(x, kernel.view(groups, 1, 1, kernel_size), groups=groups)
    return x.view(batch, channels, height, width)
