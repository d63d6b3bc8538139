"""The linear protocol: a linear classifier trained by SGD on frozen, raw features.

As solo-learn's offline linear evaluation: 100 epochs, lr 0.1, momentum 0.9, batch 256, no
weight decay, the learning rate divided by 10 at 60% and 80% of the epochs (60 and 80 of 100).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .accuracy import topk_accuracy
from .encoder import Encoder
from .errors import EvaluationError
from .features import extract_features
from .progress import Progress

DECAY_AT = (0.6, 0.8)
"""Fractions of the epochs after which the learning rate is divided by 10."""


def train_linear(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> nn.Linear:
    """A linear classifier of `features`, trained with cross-entropy; returned in eval mode."""
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise EvaluationError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}: must be > 0")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = nn.Linear(features.shape[1], num_classes).to(features.device)
    optimizer = torch.optim.SGD(
        classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    milestones = [round(fraction * epochs) for fraction in DECAY_AT]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    generator = torch.Generator().manual_seed(seed)
    n = features.shape[0]
    progress = Progress("linear classifier epochs", epochs)
    with torch.enable_grad():
        for _ in range(epochs):
            for chosen in torch.randperm(n, generator=generator).split(batch_size):
                chosen = chosen.to(features.device)
                loss = F.cross_entropy(classifier(features[chosen]), labels[chosen])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()
            progress.update()
    progress.close()
    return classifier.eval()


def linear_protocol(
    encoder: Encoder,
    features: str,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Train on the training split's frozen features; top-1/top-5 on the test split's."""
    train_features, train_labels = extract_features(encoder, "train", features)
    test_features, test_labels = extract_features(encoder, "test", features)
    classifier = train_linear(
        train_features,
        train_labels,
        encoder.num_classes,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )
    with torch.no_grad():
        train_top1 = topk_accuracy(classifier(train_features), train_labels)["top1"]
        results = topk_accuracy(classifier(test_features), test_labels)
    return {
        **results,
        "train_top1": train_top1,
        "n_train": train_features.shape[0],
        "n_test": test_features.shape[0],
    }
