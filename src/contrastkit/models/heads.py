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
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn


def projection_mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int,
    batch_norm: bool = True,
    last_bn: bool = False,
) -> nn.Sequential:
    """An MLP of `num_layers` Linear layers: hidden ones [-BN]-ReLU, the last one bare.

    `last_bn` adds an affine-free BatchNorm1d on the output (SimSiam, MoCo v3). A Linear layer
    followed by BN has no bias, which the BN would cancel. `hidden_dim` is unused when
    `num_layers` is 1.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    for label, dim in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
        if dim < 1:
            raise ValueError(f"{label} must be at least 1, got {dim}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class HeadSpec:
    """The arguments of `projection_mlp` apart from `in_dim`; `hidden_dim=None` means in_dim."""

    hidden_dim: int | None
    out_dim: int
    num_layers: int
    batch_norm: bool = True
    last_bn: bool = False


_SIMCLR = HeadSpec(hidden_dim=2048, out_dim=128, num_layers=2)

HEAD_PRESETS: dict[str, HeadSpec] = {
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
}
"""Published head defaults by method; sources in the module docstring."""


def head_preset(name: str, in_dim: int, **overrides: int | bool | None) -> nn.Sequential:
    """Build the preset head `name` on `in_dim` features; `overrides` replace HeadSpec fields.

    `simsiam_predictor` takes the projector's output (2048), not the backbone's features.
    """
    if name not in HEAD_PRESETS:
        raise ValueError(f"unknown head preset {name!r}; valid names: {', '.join(HEAD_PRESETS)}")
    spec = replace(HEAD_PRESETS[name], **overrides)
    return projection_mlp(
        in_dim,
        in_dim if spec.hidden_dim is None else spec.hidden_dim,
        spec.out_dim,
        spec.num_layers,
        batch_norm=spec.batch_norm,
        last_bn=spec.last_bn,
    )
