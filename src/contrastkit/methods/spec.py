"""Every method as data: which heads, which loss, and how its views meet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Pairing = Literal["pairs", "predictor", "stacked", "online_target", "classify"]

CONTRASTIVE_LOSSES = ("nt_xent", "info_nce", "dcl", "dcl_symmetric", "dclw", "dhel", "kcl")


@dataclass(frozen=True)
class MethodSpec:
    """A self-supervised method, declaratively.

    `pairing` says which views meet: `pairs` (loss on pairs of projections), `predictor`
    (SimSiam: each view's prediction against the other's projection), `stacked` (all views at
    once: SupCon, and multi-crop SimCLR with every crop in one matrix), `online_target`
    (online views against an EMA target's global views, ReLIC), `classify` (supervised
    cross-entropy on the first view, the baseline).
    """

    name: str
    losses: tuple[str, ...]
    projector: str | None
    pairing: Pairing = "pairs"
    predictor: str | None = None
    needs_labels: bool = False

    @property
    def default_loss(self) -> str:
        return self.losses[0]


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("simclr", CONTRASTIVE_LOSSES, "simclr"),
        MethodSpec("simclr_multicrop", ("nt_xent_multicrop",), "simclr", "stacked"),
        MethodSpec("barlow_twins", ("barlow_twins",), "barlow_twins"),
        MethodSpec("vicreg", ("vicreg",), "vicreg"),
        MethodSpec("simsiam", ("simsiam",), "simsiam", "predictor", "simsiam_predictor"),
        MethodSpec(
            "supcon", ("supcon", "nt_xent_multicrop"), "supcon", "stacked", needs_labels=True
        ),
        MethodSpec("relic", ("sigmoid",), "sigmoid", "online_target"),
        MethodSpec("supervised", ("cross_entropy",), None, "classify", needs_labels=True),
    )
}


def method_for_loss(loss: str) -> str:
    """The method that trains with `loss` (SimCLR-style two views for every contrastive loss)."""
    for spec in METHODS.values():
        if loss in spec.losses:
            return spec.name
    valid = sorted({name for spec in METHODS.values() for name in spec.losses})
    raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(valid)}")
