"""Label-free monitoring during pretraining: RankMe and α-ReQ of the backbone's features on the
probe's held-out split, logged each epoch as `val/rankme` and `val/alpha_req`.

One forward pass over at most `max_samples` held-out images per epoch (the online probe's split,
a tenth of the training split by default), on every rank alike: the figures agree without
gathering any features.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.utils.data import DataLoader

from ..data import InMemoryImages
from ..spectrum import alpha_req, rankme
from .config import PretrainConfig


def spectrum_monitor(config: PretrainConfig) -> list[Callback]:
    """The monitor when `log_spectrum` is on and the probe has a held-out split to read."""
    return [SpectrumMonitor()] if config.log_spectrum and config.probe else []


class SpectrumMonitor(Callback):
    """Logs RankMe and α-ReQ of the probe split's backbone features after each validation."""

    def __init__(self, max_samples: int = 4096, batch_size: int = 512) -> None:
        self.max_samples, self.batch_size = max_samples, batch_size

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        data = pl_module.data
        if trainer.sanity_checking or data.val is None:
            return
        features = self.features(pl_module.method.backbone, data, pl_module.device)
        pl_module.log("val/rankme", rankme(features), on_epoch=True, sync_dist=True)
        pl_module.log("val/alpha_req", alpha_req(features), on_epoch=True, sync_dist=True)

    def features(self, backbone: torch.nn.Module, data, device: torch.device) -> Tensor:
        """float32 features of the first `max_samples` held-out images, on the CPU."""
        count = min(len(data.val), self.max_samples)
        if isinstance(data.val, InMemoryImages):
            chunks = data.val.images[:count].split(self.batch_size)
        else:
            subset = data.val.subset(torch.arange(count))
            chunks = (images for images, _ in DataLoader(subset, batch_size=self.batch_size))
        outputs = [backbone(data.normalize(chunk.to(device))).float().cpu() for chunk in chunks]
        return torch.cat(outputs)
