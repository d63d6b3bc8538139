"""What the network sees: augmented views drawn afresh each epoch, and the evaluation view
(Resize + CenterCrop)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from contrastkit.eval import EvaluationError, extract_features, load_encoder
from contrastkit.eval.augmentation import AugmentedFeatures
from contrastkit.eval.linear import fit_linear
from contrastkit.eval.resolution import resize_center_crop


def test_augmentation_changes_the_features_seen_each_epoch(checkpoint: Path) -> None:
    encoder = load_encoder(str(checkpoint))
    cached, labels = extract_features(encoder, "train", "backbone")
    source = AugmentedFeatures(encoder, "backbone", 0.2)
    seen: list[dict[int, torch.Tensor]] = []

    def recording(chosen: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not seen or len(seen[-1]) == len(labels):
            seen.append({})
        out = source(chosen, generator)
        seen[-1].update({int(i): row for i, row in zip(chosen, out.cpu(), strict=True)})
        return out

    fit_linear(cached, labels, 10, source=recording, epochs=2, batch_size=512)
    first, second = seen
    assert len(seen) == 2 and set(first) == set(second) == set(range(len(labels)))
    a = torch.stack([first[i] for i in range(len(labels))])
    b = torch.stack([second[i] for i in range(len(labels))])
    assert (a - b).abs().amax(dim=1).gt(1e-4).float().mean() > 0.9  # new views each epoch
    assert (a - cached).abs().amax(dim=1).gt(1e-4).float().mean() > 0.9  # not the cache
    again = source(torch.arange(8), torch.Generator().manual_seed(5))
    torch.testing.assert_close(again, source(torch.arange(8), torch.Generator().manual_seed(5)))
    plain, _ = fit_linear(cached, labels, 10, epochs=2, batch_size=512)
    augmented, _ = fit_linear(cached, labels, 10, source=source, epochs=2, batch_size=512)
    assert not torch.allclose(plain.weight, augmented.weight)


def test_resize_center_crop_equals_interpolate_then_slice() -> None:
    images = torch.rand(2, 3, 20, 30)
    out = resize_center_crop(images, 10, 8)
    resized = F.interpolate(images, size=(10, 15), mode="bilinear", antialias=True)
    torch.testing.assert_close(out, resized[..., 1:9, 3:11])
    assert resize_center_crop(images, 0, 0) is images


def test_the_evaluation_view_changes_the_features(checkpoint: Path) -> None:
    trained = load_encoder(str(checkpoint))
    viewed = load_encoder(str(checkpoint), resize=12, crop=8)
    a, labels = extract_features(trained, "test", "backbone")
    b, same_labels = extract_features(viewed, "test", "backbone")
    assert torch.equal(labels, same_labels) and not torch.allclose(a, b, atol=1e-3)
    images = viewed.load("test").images[:4].to(viewed.device)
    recipe = viewed.recipe()
    expected = viewed.backbone(resize_center_crop(recipe.normalize(images), 12, 8))
    torch.testing.assert_close(b[:4], expected.cpu(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("resize", "crop"), [(8, 10), (0, 8), (-1, -1)])
def test_bad_views_are_one_line_errors(checkpoint: Path, resize: int, crop: int) -> None:
    with pytest.raises(EvaluationError, match=f"resize={resize}, crop={crop}"):
        load_encoder(str(checkpoint), resize=resize, crop=crop)
