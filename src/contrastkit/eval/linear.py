"""The linear protocol: a linear classifier on the frozen encoder's features.

The defaults are solo-learn's offline linear evaluation: SGD lr 0.1, momentum 0.9, batch 256,
no weight decay, 100 epochs, the lr divided by 10 at 60% and 80% of them, on cached features of
un-augmented images. With `augment`, every training image is randomly crop-resized and flipped
on the device and passed through the frozen encoder again each epoch. With `selection=best`
the epoch is chosen on a validation split carved from the training split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .accuracy import topk_accuracy
from .augmentation import AugmentedFeatures
from .encoder import Encoder
from .features import extract_features
from .fit import FitResult, fit
from .options import protocol_options, split_network
from .schedule import build_optimizer, build_scheduler, check_training
from .subsets import few_shot, validation_split

FeatureSource = Callable[[Tensor, torch.Generator], Tensor]
"""Features of the training samples at some indices (cached rows, or augmented images drawn
with the generator)."""


def linear_settings(**options: Any) -> dict[str, Any]:
    """The linear protocol's training options with `options` applied, checked."""
    _, settings = split_network(protocol_options("linear", options))
    check_training(settings)
    return settings


def fit_linear(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    train_indices: Tensor | None = None,
    val: tuple[Tensor, Tensor] | None = None,
    source: FeatureSource | None = None,
    seed: int = 0,
    state_path: Path | None = None,
    identity: str = "",
    **options: Any,
) -> tuple[nn.Linear, FitResult]:
    """A linear classifier trained with cross-entropy on the rows `train_indices` (default: all)
    of `features`, returned in eval mode with the kept epoch's weights.

    `source(indices, generator)` replaces `features[indices]` as the training input (augmented
    features); `val` (features, labels) scores each epoch for `selection=best`. `options` are
    the linear protocol's training options.
    """
    settings = linear_settings(**options)
    indices = torch.arange(len(labels)) if train_indices is None else train_indices
    read = source or (lambda chosen, _: features[chosen.to(features.device)])
    device = features.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = nn.Linear(features.shape[1], num_classes).to(device)
    optimizer = build_optimizer(
        settings["optimizer"],
        classifier.parameters(),
        settings["lr"],
        settings["weight_decay"],
        settings["momentum"],
        settings["adam_eps"],
    )
    batch_size = settings["batch_size"]
    scheduler = build_scheduler(optimizer, -(-len(indices) // batch_size), settings)
    generator = torch.Generator().manual_seed(seed)
    labels_on = labels.to(device)

    def train_epoch(_: int) -> None:
        classifier.train()
        with torch.enable_grad():
            for chosen in indices[torch.randperm(len(indices), generator=generator)].split(
                batch_size
            ):
                inputs = read(chosen, generator).to(device)
                loss = F.cross_entropy(classifier(inputs), labels_on[chosen.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()

    validate = None
    if val is not None and settings["selection"] == "best":

        @torch.no_grad()
        def validate() -> dict[str, float]:
            return topk_accuracy(classifier(val[0].to(device)), val[1].to(device))

    result = fit(
        classifier,
        optimizer,
        scheduler,
        settings["epochs"],
        train_epoch,
        validate,
        settings["select_by"],
        generator,
        state_path,
        {"protocol": "linear", "identity": identity, "seed": seed, "n": len(indices), **settings},
        settings["resume"],
    )
    return classifier.eval(), result


def train_linear(
    features: Tensor, labels: Tensor, num_classes: int, *, seed: int = 0, **options: Any
) -> nn.Linear:
    """A linear classifier of all of `features` (no selection), in eval mode."""
    classifier, _ = fit_linear(features, labels, num_classes, seed=seed, **options)
    return classifier


def training_indices(
    labels: Tensor, settings: dict[str, Any], seed: int
) -> tuple[Tensor, Tensor | None]:
    """(training indices, validation indices or None): the validation split when selecting
    the best epoch, then the few-shot subset of what is left."""
    held = None
    keep = torch.arange(len(labels))
    if settings["selection"] == "best":
        keep, held = validation_split(labels, settings["val_fraction"], settings["val_split"], seed)
    keep = few_shot(labels, keep, settings["label_fraction"], settings["per_class"], seed)
    return keep, held


def linear_protocol(
    encoder: Encoder,
    features: str,
    seed: int = 0,
    state_path: Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train on the training split (its validation part held out for `best`); test top-1/5."""
    settings = linear_settings(**options)
    train_features, train_labels = extract_features(encoder, "train", features)
    test_features, test_labels = extract_features(encoder, "test", features)
    keep, held = training_indices(train_labels, settings, seed)
    source = None
    if settings["augment"]:
        source = AugmentedFeatures(encoder, features, settings["crop_scale"])
    val = None if held is None else (train_features[held], train_labels[held])
    classifier, result = fit_linear(
        train_features,
        train_labels,
        encoder.num_classes,
        train_indices=keep,
        val=val,
        source=source,
        seed=seed,
        state_path=state_path,
        identity=f"{encoder.identity}|{features}",
        **settings,
    )
    with torch.no_grad():
        train_top1 = topk_accuracy(classifier(train_features[keep]), train_labels[keep])["top1"]
        results = topk_accuracy(classifier(test_features), test_labels)
    return {
        **results,
        "train_top1": train_top1,
        **selection_figures(result),
        "n_train": len(keep),
        "n_val": 0 if held is None else len(held),
        "n_test": test_features.shape[0],
    }


def selection_figures(result: FitResult) -> dict[str, Any]:
    """The record's figures of the epoch kept: which, and its validation top-1/top-5."""
    figures: dict[str, Any] = {"selected_epoch": result.epoch}
    if result.val is not None:
        figures.update({f"val_{k}": v for k, v in result.val.items()})
    if result.resumed_from:
        figures["resumed_from_epoch"] = result.resumed_from
    return figures
