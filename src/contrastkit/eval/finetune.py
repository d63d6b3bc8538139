"""The finetune protocol: the whole encoder and a new linear head trained with labels.

Trains on 90% of the training split (the last 10% of each class is held out, as the online
probe's split) with crop-and-flip augmentation, SGD with momentum 0.9 and a cosine learning
rate; the held-out part picks the epoch whose weights are tested.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import holdout_split
from ..data.augment import BatchAugment, ViewSpec
from ..data.presets import DataRecipe
from .accuracy import topk_accuracy
from .data import Images, batches, normalize
from .encoder import Encoder
from .errors import EvaluationError
from .features import require_features

VAL_FRACTION = 0.1


def light_augmentation(recipe: DataRecipe) -> BatchAugment:
    """Random resized crop (the dataset's pretraining crop scale) and flip, no colour changes."""
    stats = recipe.preset
    view = ViewSpec(
        size=recipe.image_size,
        scale=stats.scale or (0.08, 1.0),
        flip_p=stats.flip_p,
        jitter_p=0.0,
        grayscale_p=0.0,
    )
    return BatchAugment([view], mean=stats.mean, std=stats.std)


def _network(encoder: Encoder, features: str) -> nn.Sequential:
    """Copies of the backbone (and projector, for `features="projector"`) and a new head."""
    parts: list[nn.Module] = [copy.deepcopy(encoder.backbone)]
    dim = encoder.backbone.feature_dim
    if features == "projector":
        parts.append(copy.deepcopy(encoder.projector))
        dim = [m for m in encoder.projector.modules() if isinstance(m, nn.Linear)][-1].out_features
    parts.append(nn.Linear(dim, encoder.num_classes).to(encoder.device))
    return nn.Sequential(*parts)


@torch.no_grad()
def _scores(
    network: nn.Module,
    images: Images,
    indices: Tensor | None,
    recipe: DataRecipe,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Eval-mode class scores of un-augmented images (at `indices`), and their labels."""
    network.eval()
    device = next(network.parameters()).device
    scores, labels = [], []
    for batch, batch_labels in batches(images, batch_size, indices):
        scores.append(network(normalize(batch.to(device), recipe)).float().cpu())
        labels.append(batch_labels)
    return torch.cat(scores), torch.cat(labels)


def finetune_protocol(
    encoder: Encoder,
    features: str,
    epochs: int = 30,
    lr: float = 0.01,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune, keep the epoch best on the held-out 10%, report its test top-1/top-5."""
    require_features(encoder, features)
    if epochs < 1 or batch_size < 2 or not lr > 0:
        raise EvaluationError(
            f"epochs={epochs}, batch_size={batch_size}, lr={lr}: need epochs >= 1, "
            "batch_size >= 2, lr > 0"
        )
    train, test = encoder.load("train"), encoder.load("test")
    keep, held = holdout_split(train.labels, VAL_FRACTION)
    if len(held) == 0:
        raise EvaluationError(f"{encoder.dataset}: too few training images to hold out 10%")
    recipe = encoder.recipe()
    augment = light_augmentation(recipe)
    device = encoder.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _network(encoder, features)
    optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(seed)
    best_top1, best_epoch, best_state = -1.0, 0, None
    for epoch in range(1, epochs + 1):
        network.train()
        order = keep[torch.randperm(len(keep), generator=generator)]
        for batch, labels in batches(train, batch_size, order):
            if len(labels) < 2:  # BatchNorm cannot train on a single sample
                continue
            (view,) = augment(batch.to(device), generator=generator)
            loss = F.cross_entropy(network(view), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        val_top1 = topk_accuracy(*_scores(network, train, held, recipe, batch_size))["top1"]
        if val_top1 > best_top1:
            best_top1, best_epoch = val_top1, epoch
            best_state = copy.deepcopy(network.state_dict())
    network.load_state_dict(best_state)
    results = topk_accuracy(*_scores(network, test, None, recipe, batch_size))
    return {
        **results,
        "best_epoch": best_epoch,
        "val_top1": best_top1,
        "epochs": epochs,
        "n_train": len(keep),
        "n_val": len(held),
        "n_test": len(test),
    }
