"""Would a label-free metric have picked the best run? The Spearman rank correlation, across a
grid's runs, of RankMe and α-ReQ (metrics protocol, probe split) with linear top-1."""

from __future__ import annotations

from typing import Any

from .grid import CompareSpec

LABEL_FREE = ("rankme", "alpha_req")
"""The label-free metrics of the metrics protocol that compare correlates with accuracy."""


def reference_protocol(spec: CompareSpec) -> str:
    """The grid's linear protocol (`linear`, else a linear preset), else its first protocol."""
    from ..eval import PRESETS

    for name in spec.protocols:
        if name == "linear" or PRESETS.get(name, {}).get("protocol") == "linear":
            return name
    return spec.protocols[0]


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's ρ (ties share their mean rank); None below 3 pairs or for a constant list."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def label_free_correlations(spec: CompareSpec, records: list[dict[str, Any]]) -> dict[str, Any]:
    """ρ of each label-free metric with the reference protocol's top-1 over every finished run
    but the supervised baseline (which used labels); `runs` counts them."""
    protocol = reference_protocol(spec)
    runs = [
        r
        for r in records
        if "error" not in r
        and r["row"] != "supervised"
        and all(r["results"]["metrics"].get(m) is not None for m in LABEL_FREE)
    ]
    top1 = [r["results"][protocol]["top1"] for r in runs]
    return {
        "protocol": protocol,
        "runs": len(runs),
        **{m: spearman([r["results"]["metrics"][m] for r in runs], top1) for m in LABEL_FREE},
    }
