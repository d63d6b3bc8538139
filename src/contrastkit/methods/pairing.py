"""Which views meet which: index pairs for the ways a method combines per-view outputs."""

from __future__ import annotations


def view_pairs(n_views: int, n_global: int) -> list[tuple[int, int]]:
    """Unordered pairs (i, j), i < j, with i a global view: two views give just (0, 1).

    With multi-crop every global view meets every other view; local views never meet each
    other, as in SwAV and DINO.
    """
    return [(i, j) for i in range(min(n_global, n_views)) for j in range(i + 1, n_views)]


def online_target_pairs(n_views: int, n_global: int) -> list[tuple[int, int]]:
    """Pairs (i, j): every online view i against every global target view j ≠ i.

    The target network sees global views only (ReLIC, BYOL, DINO).
    """
    return [(i, j) for i in range(n_views) for j in range(min(n_global, n_views)) if i != j]
