"""The linear-sweep protocol: one linear head per (lr, weight decay) of a grid, all trained at
once on cached features as one batched product, the head chosen on a validation split carved
from the training split and reported on the test split.

Each head follows exactly the SGD (momentum, coupled weight decay) and schedule of the linear
protocol with its own lr and weight decay; all start from the same initialisation and see the
same batches, so head k equals a linear protocol run with the k-th grid values.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .accuracy import topk_accuracy
from .encoder import Encoder
from .errors import EvaluationError
from .features import extract_features
from .options import protocol_options, split_network
from .schedule import check_training, settings_lr_factor
from .subsets import few_shot, validation_split


class LinearHeads(nn.Module):
    """K linear classifiers of F features into C classes: weight (K, F, C), bias (K, C)."""

    def __init__(self, heads: int, in_dim: int, classes: int, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            first = nn.Linear(in_dim, classes)  # nn.Linear's initialisation, for every head
        self.weight = nn.Parameter(first.weight.detach().T.repeat(heads, 1, 1))
        self.bias = nn.Parameter(first.bias.detach().repeat(heads, 1))

    def forward(self, features: Tensor) -> Tensor:
        """Scores (K, N, C) of (N, F) features under every head: one (N, F) × (F, K·C) product."""
        heads, in_dim, classes = self.weight.shape
        flat = self.weight.permute(1, 0, 2).reshape(in_dim, heads * classes)
        scores = (features @ flat).view(-1, heads, classes) + self.bias
        return scores.permute(1, 0, 2)


def train_heads(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    lrs: Tensor,
    weight_decays: Tensor,
    settings: dict[str, Any],
    seed: int = 0,
) -> LinearHeads:
    """K = len(lrs) heads trained by SGD with momentum, head k with lrs[k] and
    weight_decays[k], on the same shuffled batches (the linear protocol's, for `seed`)."""
    device = features.device
    heads = LinearHeads(len(lrs), features.shape[1], num_classes, seed).to(device)
    lrs, decays = lrs.to(device), weight_decays.to(device)
    factor = settings_lr_factor(settings)
    momentum, batch_size = settings["momentum"], settings["batch_size"]
    buffers = [torch.zeros_like(p) for p in heads.parameters()]
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    steps_per_epoch, step = -(-n // batch_size), 0
    for _ in range(settings["epochs"]):
        for chosen in torch.randperm(n, generator=generator).split(batch_size):
            chosen = chosen.to(device)
            with torch.enable_grad():
                scores = heads(features[chosen])
                # Each head's mean cross-entropy; their sum leaves each head its own gradient.
                loss = F.cross_entropy(
                    scores.flatten(0, 1), labels[chosen].repeat(len(lrs)), reduction="sum"
                ) / len(chosen)
                grads = torch.autograd.grad(loss, list(heads.parameters()))
            rate = lrs * factor(step / steps_per_epoch)
            with torch.no_grad():
                for param, grad, buffer in zip(heads.parameters(), grads, buffers, strict=True):
                    shape = (-1,) + (1,) * (param.dim() - 1)
                    grad = grad + decays.view(shape) * param
                    buffer.copy_(grad if step == 0 else buffer * momentum + grad)
                    param -= rate.view(shape) * buffer
            step += 1
    return heads


def sweep_protocol(
    encoder: Encoder, features: str, seed: int = 0, **options: Any
) -> dict[str, Any]:
    """Train the lr × weight-decay grid, keep the head best on validation, report it on test."""
    _, settings = split_network(protocol_options("linear-sweep", options))
    check_training({**settings, "selection": "best"})
    grid = list(itertools.product(settings["lrs"], settings["weight_decays"]))
    if not grid or any(lr <= 0 or wd < 0 for lr, wd in grid):
        raise EvaluationError(
            f"lrs={settings['lrs']}, weight_decays={settings['weight_decays']}: need lrs > 0, "
            "weight decays >= 0, at least one of each"
        )
    train_features, train_labels = extract_features(encoder, "train", features)
    test_features, test_labels = extract_features(encoder, "test", features)
    keep, held = validation_split(
        train_labels, settings["val_fraction"], settings["val_split"], seed
    )
    keep = few_shot(train_labels, keep, settings["label_fraction"], settings["per_class"], seed)
    device = encoder.device
    heads = train_heads(
        train_features[keep].to(device),
        train_labels[keep].to(device),
        encoder.num_classes,
        torch.tensor([lr for lr, _ in grid]),
        torch.tensor([wd for _, wd in grid]),
        settings,
        seed,
    )
    with torch.no_grad():
        val_scores = heads(train_features[held].to(device)).cpu()
        test_scores = heads(test_features.to(device)).cpu()
    val = [topk_accuracy(s, train_labels[held]) for s in val_scores]
    best = max(range(len(grid)), key=lambda k: val[k][settings["select_by"]])
    return {
        **topk_accuracy(test_scores[best], test_labels),
        "lr": grid[best][0],
        "weight_decay": grid[best][1],
        "val_top1": val[best]["top1"],
        "val_top5": val[best]["top5"],
        "grid": [
            {"lr": lr, "weight_decay": wd, "val_top1": v["top1"], "val_top5": v["top5"]}
            for (lr, wd), v in zip(grid, val, strict=True)
        ],
        "n_train": len(keep),
        "n_val": len(held),
        "n_test": test_features.shape[0],
    }
