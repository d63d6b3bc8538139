"""Projection and prediction heads: MLPs on top of backbone features, with each method's defaults.

Presets (`HEAD_PRESETS`; `num_layers` counts Linear layers; hidden layers are Linear-BN-ReLU
unless noted; `hidden_dim=None` means "the backbone's feature dim"):

- simclr, dcl, dhel: 2 layers, hidden 2048, out 128, no BN on the output. Chen et al. 2020
  (SimCLR, 128-d output) with BN on the hidden layer as in solo-learn's SimCLR; the DCL and DHEL
  comparisons reuse the SimCLR head.
- barlow_twins: 3 layers 8192-8192-8192. Zbontar et al. 2021 (facebookresearch/barlowtwins);
  the affine-free output BN of the paper is part of our Barlow Twins loss.
- vicreg: 3 layers 8192-8192-8192 expander. Bardes et al. 2022 (facebookresearch/vicreg).
- simsiam: 3 layers 2048-2048-2048 projector, BN on every layer including an affine-free output
  BN. Chen & He 2021, Sec. 4 and facebookresearch/simsiam.
- simsiam_predictor: 2048→512→2048 bottleneck, BN on the hidden layer only. Chen & He 2021.
- sigmoid: 2 layers, hidden 512, out 64. The sigmoid-contrastive-loss seed (Basara 2024, after
  ReLIC): README "Proj. head dim 64", `--proj_hidden_dim` default 512 in its run_training.py.
- supcon: 2 layers, hidden = feature dim, out 128, no BN (Linear-ReLU-Linear). Khosla et al.
  2020, HobbitLong/SupContrast `SupConResNet(head="mlp")`.
- byol, byol_predictor: 2 layers, hidden 4096, out 256. Grill et al. 2020, Sec. 3.3.
- moco_v2: 2 layers, hidden 2048, out 128, no BN (Linear-ReLU-Linear). Chen et al. 2020
  (MoCo v2), facebookresearch/moco `--mlp`.
- moco_v3, moco_v3_predictor: projector 3 layers, predictor 2 layers, hidden 4096, out 256, BN
  on every hidden layer and an affine-free output BN. Chen, Xie & He 2021 (ResNet setting).
- nnclr: 3 layers, hidden 2048, out 256, output BN; nnclr_predictor: 4096 hidden, out 256.
  Dwibedi et al. 2021, Sec. 4 and solo-learn's NNCLR (affine-free output BN here).
- lejepa: 3 layers, hidden 2048, out 128, BN on the hidden layers. rbalestr-lab/lejepa
  MINIMAL.md (`MLP(512, [2048, 2048, proj_dim])` with BatchNorm1d).
- dino: a `DINOHead` (`DINOHeadSpec`): 3 GELU layers, hidden 2048, bottleneck 256, 65536
  normalised prototypes. Caron et al. 2021, facebookresearch/dino `DINOHead` defaults.
- swav: 2 layers, hidden 2048, out 128, BN on the hidden layer; the prototypes follow it (a
  `NormalizedLinear` the method builds). Caron et al. 2020, facebookresearch/swav
  (`--hidden_mlp 2048 --feat_dim 128`) and solo-learn's SwAV.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

OUT_BN = ("none", "affine", "nonaffine")
"""Output batch norm of a head: none, with a learnt scale and shift, or standardisation only."""


def projection_mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int,
    batch_norm: bool = True,
    last_bn: bool = False,
    out_bn: str | None = None,
    bias: bool | None = None,
) -> nn.Sequential:
    """An MLP of `num_layers` Linear layers: hidden ones [-BN]-ReLU, the last one bare.

    `out_bn` ("none", "affine", "nonaffine") puts a BatchNorm1d on the output; `last_bn=True` is
    the older spelling of "nonaffine" (SimSiam, MoCo v3). `bias=None` gives a Linear layer a bias
    unless a BN follows it, which would cancel it; True or False sets every Linear layer's bias
    (solo-learn keeps them before BN, the sigmoid seed drops them everywhere). `hidden_dim` is
    unused when `num_layers` is 1.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    for label, dim in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
        if dim < 1:
            raise ValueError(f"{label} must be at least 1, got {dim}")
    out_bn = out_bn or ("nonaffine" if last_bn else "none")
    if out_bn not in OUT_BN:
        raise ValueError(f"out_bn must be one of {', '.join(OUT_BN)}, got {out_bn!r}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm if bias is None else bias))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=out_bn == "none" if bias is None else bias))
    if out_bn != "none":
        layers.append(nn.BatchNorm1d(out_dim, affine=out_bn == "affine"))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class HeadSpec:
    """The arguments of `projection_mlp` apart from `in_dim`; `hidden_dim=None` means in_dim."""

    hidden_dim: int | None
    out_dim: int
    num_layers: int
    batch_norm: bool = True
    last_bn: bool = False
    out_bn: str | None = None
    bias: bool | None = None


@dataclass(frozen=True)
class DINOHeadSpec:
    """The arguments of `DINOHead` apart from `in_dim` (DINO's defaults)."""

    hidden_dim: int = 2048
    out_dim: int = 65536
    num_layers: int = 3
    bottleneck_dim: int = 256
    freeze_steps: int = 0


_SIMCLR = HeadSpec(hidden_dim=2048, out_dim=128, num_layers=2)

HEAD_PRESETS: dict[str, HeadSpec | DINOHeadSpec] = {
    "simclr": _SIMCLR,
    "dcl": _SIMCLR,
    "dhel": _SIMCLR,
    "barlow_twins": HeadSpec(hidden_dim=8192, out_dim=8192, num_layers=3),
    "vicreg": HeadSpec(hidden_dim=8192, out_dim=8192, num_layers=3),
    "simsiam": HeadSpec(hidden_dim=2048, out_dim=2048, num_layers=3, last_bn=True),
    "simsiam_predictor": HeadSpec(hidden_dim=512, out_dim=2048, num_layers=2),
    "sigmoid": HeadSpec(hidden_dim=512, out_dim=64, num_layers=2),
    "supcon": HeadSpec(hidden_dim=None, out_dim=128, num_layers=2, batch_norm=False),
    "byol": HeadSpec(hidden_dim=4096, out_dim=256, num_layers=2),
    "byol_predictor": HeadSpec(hidden_dim=4096, out_dim=256, num_layers=2),
    "moco_v2": HeadSpec(hidden_dim=2048, out_dim=128, num_layers=2, batch_norm=False),
    "moco_v3": HeadSpec(hidden_dim=4096, out_dim=256, num_layers=3, last_bn=True),
    "moco_v3_predictor": HeadSpec(hidden_dim=4096, out_dim=256, num_layers=2, last_bn=True),
    "nnclr": HeadSpec(hidden_dim=2048, out_dim=256, num_layers=3, last_bn=True),
    "nnclr_predictor": HeadSpec(hidden_dim=4096, out_dim=256, num_layers=2),
    "lejepa": HeadSpec(hidden_dim=2048, out_dim=128, num_layers=3),
    "dino": DINOHeadSpec(),
    "swav": HeadSpec(hidden_dim=2048, out_dim=128, num_layers=2),
}
"""Published head defaults by method; sources in the module docstring."""


def head_spec(name: str, **overrides: int | bool | str | None) -> HeadSpec | DINOHeadSpec:
    """The preset `name` with `overrides` replacing its fields; TypeError naming an override
    the preset has no field for (a DINO head has no batch norm, an MLP no bottleneck)."""
    if name not in HEAD_PRESETS:
        raise ValueError(f"unknown head preset {name!r}; valid names: {', '.join(HEAD_PRESETS)}")
    spec = HEAD_PRESETS[name]
    valid = [f.name for f in fields(spec)]
    for key in overrides:
        if key not in valid:
            raise TypeError(f"the {name} head has no option {key}; valid: {', '.join(valid)}")
    return replace(spec, **overrides)


def head_preset(name: str, in_dim: int, **overrides: int | bool | str | None) -> nn.Module:
    """Build the preset head `name` on `in_dim` features; `overrides` replace the spec's fields.

    `simsiam_predictor` takes the projector's output (2048), not the backbone's features.
    """
    spec = head_spec(name, **overrides)
    if isinstance(spec, DINOHeadSpec):
        return DINOHead(in_dim, **asdict(spec))
    return projection_mlp(
        in_dim,
        in_dim if spec.hidden_dim is None else spec.hidden_dim,
        spec.out_dim,
        spec.num_layers,
        batch_norm=spec.batch_norm,
        last_bn=spec.last_bn,
        out_bn=spec.out_bn,
        bias=spec.bias,
    )


class NormalizedLinear(nn.Module):
    """A bias-free linear layer whose weight rows are used at unit norm: SwAV's prototypes and
    DINO's last layer (its weight_norm with the gain fixed to 1).

    The rows are normalised in the forward pass, so they stay unit-norm whatever the optimiser
    does. `freeze_steps`: for the first that many optimiser steps the layer must not move (DINO
    freezes its last layer, SwAV its prototypes, early on to avoid collapse); the training step
    calls `drop_grads_if_frozen(step)` between backward and the optimiser step.
    """

    def __init__(self, in_dim: int, out_dim: int, freeze_steps: int = 0) -> None:
        super().__init__()
        for label, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if value < 1:
                raise ValueError(f"{label} must be at least 1, got {value}")
        if freeze_steps < 0:
            raise ValueError(f"freeze_steps must be >= 0, got {freeze_steps}")
        self.out_features = out_dim
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's initialisation
        self.freeze_steps = freeze_steps

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, F.normalize(self.weight, dim=1))

    def is_frozen(self, step: int) -> bool:
        """Whether optimiser step `step` (counted from 0) must leave the layer unchanged."""
        return step < self.freeze_steps

    def drop_grads_if_frozen(self, step: int) -> bool:
        """Set the gradients to None at a frozen step, so that no optimiser (momentum, weight
        decay included) updates the layer; return whether the step is frozen."""
        frozen = self.is_frozen(step)
        if frozen:
            for parameter in self.parameters():
                parameter.grad = None
        return frozen


class DINOHead(nn.Module):
    """DINO's head (Caron et al., 2021, facebookresearch/dino `DINOHead`): an MLP of `num_layers`
    Linear layers with GELU between them ending in a `bottleneck_dim` output, L2-normalised, then
    a `NormalizedLinear` to `out_dim` prototypes. Linear weights start as trunc_normal(std=0.02),
    biases at 0, as in DINO."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        freeze_steps: int = 0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        for label, value in (("hidden_dim", hidden_dim), ("bottleneck_dim", bottleneck_dim)):
            if value < 1:
                raise ValueError(f"{label} must be at least 1, got {value}")
        dims = [in_dim, *[hidden_dim] * (num_layers - 1), bottleneck_dim]
        layers: list[nn.Module] = []
        for index, (dim_in, dim_out) in enumerate(itertools.pairwise(dims)):
            linear = nn.Linear(dim_in, dim_out)
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if index < num_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.last_layer = NormalizedLinear(bottleneck_dim, out_dim, freeze_steps)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))
