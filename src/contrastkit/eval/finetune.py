"""The finetune protocol: the whole encoder and a new linear head trained with labels.

By default: 90% of the training split (the last 10% of each class is held out, as the online
probe's split, and chooses the epoch), crop-and-flip augmentation, SGD lr 0.01 with momentum 0.9
and a cosine schedule, 30 epochs. Every training option of the linear protocol applies, and a
label fraction for semi-supervised fine-tuning.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.presets import DataRecipe
from .accuracy import topk_accuracy
from .augmentation import crop_flip
from .data import Images, batches
from .encoder import Encoder
from .errors import EvaluationError
from .features import require_features
from .fit import fit
from .linear import selection_figures, training_indices
from .options import protocol_options, split_network
from .schedule import build_optimizer, build_scheduler, check_training


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
    encoder: Encoder,
    images: Images,
    indices: Tensor | None,
    recipe: DataRecipe,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Eval-mode class scores of un-augmented images (at `indices`), and their labels."""
    network.eval()
    scores, labels = [], []
    for batch, batch_labels in batches(images, batch_size, indices):
        scores.append(network(encoder.prepare(batch.to(encoder.device), recipe)).float().cpu())
        labels.append(batch_labels)
    return torch.cat(scores), torch.cat(labels)


def finetune_protocol(
    encoder: Encoder,
    features: str,
    seed: int = 0,
    state_path: Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Fine-tune, keep the epoch `selection` says, report its test top-1/top-5."""
    require_features(encoder, features)
    _, settings = split_network(protocol_options("finetune", options))
    check_training(settings)
    batch_size = settings["batch_size"]
    if batch_size < 2:
        raise EvaluationError(f"batch_size={batch_size}: finetune needs >= 2 (BatchNorm)")
    train, test = encoder.load("train"), encoder.load("test")
    keep, held = training_indices(train.labels, settings, seed)
    recipe = encoder.recipe()
    augment = crop_flip(recipe, encoder.input_size, settings["crop_scale"])
    device = encoder.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _network(encoder, features)
    optimizer = build_optimizer(
        settings["optimizer"],
        network.parameters(),
        settings["lr"],
        settings["weight_decay"],
        settings["momentum"],
        settings["adam_eps"],
    )
    scheduler = build_scheduler(optimizer, -(-len(keep) // batch_size), settings)
    generator = torch.Generator().manual_seed(seed)

    def train_epoch(_: int) -> None:
        network.train()
        order = keep[torch.randperm(len(keep), generator=generator)]
        for batch, labels in batches(train, batch_size, order):
            if len(labels) < 2:  # BatchNorm cannot train on a single sample
                continue
            batch = batch.to(device)
            if settings["augment"]:
                (inputs,) = augment(batch, generator=generator)
            else:
                inputs = encoder.prepare(batch, recipe)
            loss = F.cross_entropy(network(inputs), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

    def validate() -> dict[str, float]:
        return topk_accuracy(*_scores(network, encoder, train, held, recipe, batch_size))

    result = fit(
        network,
        optimizer,
        scheduler,
        settings["epochs"],
        train_epoch,
        validate if held is not None else None,
        settings["select_by"],
        generator,
        state_path,
        {
            "protocol": "finetune",
            "identity": encoder.identity,
            "features": features,
            "seed": seed,
            **settings,
        },
        settings["resume"],
    )
    results = topk_accuracy(*_scores(network, encoder, test, None, recipe, batch_size))
    return {
        **results,
        **selection_figures(result),
        "epochs": settings["epochs"],
        "n_train": len(keep),
        "n_val": 0 if held is None else len(held),
        "n_test": len(test),
    }
