"""Zero-init of each residual block's last batch norm (Goyal et al., 2017), as SimSiam trains."""

from __future__ import annotations

from torch import nn


def zero_init_residual(module: nn.Module) -> int:
    """Zero the scale of the last BN in every torchvision ResNet block inside `module`, so each
    block starts as the identity; torchvision's `resnet*(zero_init_residual=True)` does the same.
    Returns the number of blocks changed; raises ValueError when there are none."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    count = 0
    for block in module.modules():
        last = {BasicBlock: "bn2", Bottleneck: "bn3"}.get(type(block))
        if last is not None:
            nn.init.zeros_(getattr(block, last).weight)
            count += 1
    if not count:
        raise ValueError(f"{type(module).__name__} has no ResNet residual blocks to zero-init")
    return count
