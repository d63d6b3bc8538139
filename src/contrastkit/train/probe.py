"""The online linear probe: a linear classifier on detached features with its own optimiser.

It reads the representation as training goes, without ever sending a gradient into it. It is
kept outside the LightningModule's parameters so DDP never sees it: its separate backward would
otherwise break DDP's one-backward-per-forward bookkeeping. Across ranks its gradients are
averaged by hand, so every rank holds the same probe.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class OnlineProbe:
    """Linear classifier trained by SGD on `features.detach()`; samples labelled -1 are skipped."""

    def __init__(self, feature_dim: int, num_classes: int, lr: float = 0.1):
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.optimizer = torch.optim.SGD(self.classifier.parameters(), lr=lr, momentum=0.9)

    def to(self, device: torch.device) -> OnlineProbe:
        self.classifier.to(device)
        return self

    def train_step(self, features: Tensor, labels: Tensor) -> Tensor:
        """One SGD step on the labelled samples; returns the loss (0 when none is labelled)."""
        with torch.autocast(features.device.type, enabled=False), torch.enable_grad():
            logits = self.classifier(features.detach().float())
            # ignore_index, not a boolean mask: selecting by a mask waits for the device.
            loss = F.cross_entropy(logits, labels, ignore_index=-1, reduction="sum")
            loss = loss / max(1, len(labels))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for param in self.classifier.parameters():
                dist.all_reduce(param.grad, op=dist.ReduceOp.AVG)
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def predict(self, features: Tensor) -> Tensor:
        with torch.autocast(features.device.type, enabled=False):
            return self.classifier(features.float())

    def state_dict(self) -> dict[str, Any]:
        return {
            "classifier": self.classifier.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.classifier.load_state_dict(state["classifier"])
        self.optimizer.load_state_dict(state["optimizer"])


def topk_correct(logits: Tensor, labels: Tensor, k: int) -> Tensor:
    """Number of samples whose label is among the `k` highest logits (k capped at the classes)."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).sum()
