"""The seeds' evaluation protocols as presets, each checked against seed_recipes.md by what it
does: the optimiser built, the learning rate over the run, the augmentation, the network read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize
from torch import nn

from contrastkit.data.presets import DataRecipe
from contrastkit.eval import (
    PRESETS,
    EvaluationError,
    evaluate,
    extract_features,
    load_encoder,
    protocol_options,
    topk_accuracy,
)
from contrastkit.eval.augmentation import crop_flip
from contrastkit.eval.options import split_network
from contrastkit.eval.presets import resolve
from contrastkit.eval.schedule import build_optimizer, build_scheduler

from .conftest import tiny_checkpoint


def _settings(name: str) -> tuple[str, str, dict, dict]:
    protocol, features, options = resolve(name, None, {})
    network, own = split_network(protocol_options(protocol, options))
    return protocol, features, network, own


def _lr_per_epoch(own: dict, steps_per_epoch: int = 10) -> np.ndarray:
    """The learning rate of each optimiser step the preset's schedule gives, per epoch."""
    head = nn.Linear(4, 3)
    optimizer = build_optimizer(
        own["optimizer"],
        head.parameters(),
        own["lr"],
        own["weight_decay"],
        own["momentum"],
        own["adam_eps"],
    )
    scheduler = build_scheduler(optimizer, steps_per_epoch, own)
    rates = []
    for _ in range(own["epochs"] * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(rates).reshape(own["epochs"], steps_per_epoch)


def test_the_four_seed_presets_exist_and_are_valid() -> None:
    assert set(PRESETS) == {"seed000", "seed002-linear", "seed003-supcon-linear", "seed004-logreg"}


def test_seed000_adamw_cosine_on_the_projector_chosen_by_top5_on_a_random_tenth() -> None:
    protocol, features, network, own = _settings("seed000")
    assert (protocol, features, network["encoder"]) == ("linear", "projector", "online")
    assert (network["resize"], network["crop"]) == (256, 224)  # eval images 256 → 224
    optimizer = build_optimizer("adamw", nn.Linear(2, 2).parameters(), own["lr"],
                                own["weight_decay"], own["momentum"], own["adam_eps"])  # fmt: skip
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert (group["lr"], group["eps"], group["weight_decay"]) == (1e-3, 1e-6, 0.01)
    assert (own["epochs"], own["batch_size"]) == (200, 128)
    assert (own["selection"], own["select_by"], own["val_split"], own["val_fraction"]) == (
        "best", "top5", "random", 0.1,
    )  # fmt: skip
    rates = _lr_per_epoch(own).ravel() / 1e-3
    warmup = int(0.05 * len(rates))  # linear warm-up over 5% of the steps
    np.testing.assert_allclose(rates[:warmup], np.arange(warmup) / warmup, atol=1e-9)
    assert rates[warmup] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.345, abs=1e-3)  # a 0.3-cycle cosine ends at 34.5%
    assert np.all(np.diff(rates[warmup:]) <= 1e-12)


def test_seed002_offline_linear_sgd_step_decay_with_crops_through_the_frozen_encoder() -> None:
    protocol, features, network, own = _settings("seed002-linear")
    assert (protocol, features, network["encoder"]) == ("linear", "backbone", "online")
    assert (network["resize"], network["crop"]) == (256, 224)
    assert (own["optimizer"], own["momentum"], own["weight_decay"]) == ("sgd", 0.9, 0.0)
    assert (own["epochs"], own["batch_size"], own["selection"]) == (100, 256, "last")
    rates = _lr_per_epoch(own)
    assert rates[:60].max() == rates[:60].min() == pytest.approx(0.1)
    assert rates[60:80].max() == pytest.approx(0.01) and rates[80:].max() == pytest.approx(1e-3)
    assert own["augment"]
    (view,) = _augmentation(own["crop_scale"]).views
    assert view.scale == (0.2, 1.0) and view.flip_p == 0.5 and view.jitter_p == 0.0
    assert _augmentation(own["crop_scale"], "digits").views[0].flip_p == 0.0  # digits never flip


def test_seed003_supcon_linear_lr_5_batch_512_decay_0_2_at_60_75_90() -> None:
    protocol, features, network, own = _settings("seed003-supcon-linear")
    assert (protocol, features, network) == (
        "linear", "backbone", {"encoder": "online", "resize": 0, "crop": 0},
    )  # fmt: skip
    assert (own["optimizer"], own["momentum"], own["weight_decay"]) == ("sgd", 0.9, 0.0)
    assert (own["epochs"], own["batch_size"]) == (100, 512)
    rates = _lr_per_epoch(own)[:, 0]
    expected = [5.0] * 60 + [1.0] * 15 + [0.2] * 15 + [0.04] * 10
    np.testing.assert_allclose(rates, expected, rtol=1e-9)
    (view,) = _augmentation(own["crop_scale"]).views
    assert own["augment"] and view.scale == (0.2, 1.0) and view.flip_p == 0.5
    # SupContrast reports its best test epoch; selection never reads the test split here.
    assert own["selection"] == "last"


def _augmentation(min_scale: float, dataset: str = "cifar10"):
    """The training augmentation a linear head gets on `dataset` (its recipe's preset)."""
    return crop_flip(DataRecipe(dataset, 32, 3), 32, min_scale)


def test_seed004_calibrated_logreg_on_l2_normalised_features_of_the_ema_target(
    tmp_path: Path,
) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "relic", "relic")
    record = evaluate(str(checkpoint), "seed004-logreg", out=str(tmp_path / "r.json"))
    assert (record["preset"], record["protocol"], record["encoder"]) == (
        "seed004-logreg", "logreg", "target",
    )  # fmt: skip
    assert record["options"]["normalize"] == "l2" and record["options"]["max_iter"] == 100
    # The target's weights, not the online backbone's, were evaluated...
    target = load_encoder(str(checkpoint), encoder="target")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    name = "body.block1.0.weight"
    assert torch.equal(target.backbone.state_dict()[name].cpu(),
                       state[f"method.target.target.0.{name}"])  # fmt: skip
    assert not torch.equal(
        state[f"method.target.target.0.{name}"], state[f"method.backbone.{name}"]
    )
    # ...and scikit-learn's seed-004 pipeline run directly on them gives the same figures.
    train, train_labels = extract_features(target, "train", "backbone")
    test, test_labels = extract_features(target, "test", "backbone")
    model = CalibratedClassifierCV(
        LogisticRegression(max_iter=100, random_state=0), method="sigmoid", cv=5
    ).fit(normalize(train.numpy()), train_labels.numpy())
    scores = torch.from_numpy(model.predict_proba(normalize(test.numpy())))
    assert record["top1"] == pytest.approx(topk_accuracy(scores, test_labels)["top1"], abs=1e-9)
    online = evaluate(str(checkpoint), "seed004-logreg", out=str(tmp_path / "o.json"),
                      encoder="online")  # fmt: skip
    assert online["encoder"] == "online"


def test_a_preset_on_a_method_without_a_target_is_a_one_line_error(checkpoint: Path) -> None:
    with pytest.raises(EvaluationError, match="has no EMA target; use encoder=online"):
        evaluate(str(checkpoint), "seed004-logreg")


def test_options_given_with_a_preset_win_and_its_random_split_is_used(
    checkpoint: Path, tmp_path: Path
) -> None:
    record = evaluate(
        str(checkpoint), "seed000", out=str(tmp_path / "r.json"), epochs=3, resize=10, crop=8
    )
    assert (record["preset"], record["features"], record["options"]["epochs"]) == (
        "seed000", "projector", 3,
    )  # fmt: skip
    assert record["options"]["optimizer"] == "adamw"
    assert (record["n_val"], record["n_train"]) == (144, 1438 - 144)  # random 10% of 1438
    assert 1 <= record["selected_epoch"] <= 3
