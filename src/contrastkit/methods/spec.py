"""Every method as data: which heads, which loss, and how its views meet."""

from __future__ import annotations

from dataclasses import dataclass, field

from .pairing import (
    CenteredTarget,
    Classify,
    Joint,
    NearestNeighbour,
    OnlineTarget,
    Pairing,
    PredictorPairs,
    QueuedTarget,
    Stacked,
)
from .swav import SwappedPrediction

PAIR_REDUCTIONS = ("mean", "sum")

CONTRASTIVE_LOSSES = ("nt_xent", "info_nce", "dcl", "dcl_symmetric", "dclw", "dhel", "kcl")


@dataclass(frozen=True)
class MethodSpec:
    """A self-supervised method, declaratively.

    `pairing` (methods/pairing.py) says which views meet and what the method needs besides
    backbone and projector (EMA target, predictor, queue); `projector` and `predictor` name head
    presets (models/heads.py); `pair_reduction` combines the view pairs' losses (`mean`, or
    `sum` as the BYOL and MoCo v3 papers do); `ema_base` is the EMA target's default starting
    momentum (DINO's 0.996).
    """

    name: str
    losses: tuple[str, ...]
    projector: str | None
    pairing: Pairing = field(default_factory=Pairing)
    predictor: str | None = None
    needs_labels: bool = False
    pair_reduction: str = "mean"
    ema_base: float = 0.99

    def __post_init__(self) -> None:
        if bool(self.predictor) != self.pairing.predictor:
            raise ValueError(f"method {self.name!r}: a predictor head iff its pairing needs one")
        if self.pair_reduction not in PAIR_REDUCTIONS:
            raise ValueError(f"method {self.name!r}: pair_reduction {self.pair_reduction!r}")

    @property
    def default_loss(self) -> str:
        return self.losses[0]


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("simclr", CONTRASTIVE_LOSSES, "simclr"),
        MethodSpec("simclr_multicrop", ("nt_xent_multicrop",), "simclr", Stacked()),
        MethodSpec("barlow_twins", ("barlow_twins",), "barlow_twins"),
        MethodSpec("vicreg", ("vicreg",), "vicreg"),
        MethodSpec("simsiam", ("simsiam",), "simsiam", PredictorPairs(), "simsiam_predictor"),
        MethodSpec(
            "supcon", ("supcon", "nt_xent_multicrop"), "supcon", Stacked(), needs_labels=True
        ),
        MethodSpec("relic", ("sigmoid",), "sigmoid", OnlineTarget()),
        MethodSpec("supervised", ("cross_entropy",), None, Classify(), needs_labels=True),
        MethodSpec(
            "byol", ("byol",), "byol", OnlineTarget(predictor=True), "byol_predictor", False, "sum"
        ),
        MethodSpec("moco_v2", ("moco",), "moco_v2", QueuedTarget()),
        MethodSpec(
            "moco_v3",
            ("moco_v3",),
            "moco_v3",
            OnlineTarget(predictor=True),
            "moco_v3_predictor",
            pair_reduction="sum",
        ),
        MethodSpec("nnclr", ("nnclr",), "nnclr", NearestNeighbour(), "nnclr_predictor"),
        MethodSpec("lejepa", ("lejepa",), "lejepa", Joint()),
        MethodSpec("dino", ("dino",), "dino", CenteredTarget(), ema_base=0.996),
        MethodSpec("swav", ("swav",), "swav", SwappedPrediction()),
    )
}


def method_for_loss(loss: str) -> str:
    """The method that trains with `loss` (SimCLR-style two views for every contrastive loss)."""
    for spec in METHODS.values():
        if loss in spec.losses:
            return spec.name
    valid = sorted({name for spec in METHODS.values() for name in spec.losses})
    raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(valid)}")
