"""Augmentation settings per view group and per view, named recipes, and their resolution into
one ``ViewSpec`` per view.

An augmentation is a recipe name (``"simclr"``) or a mapping::

    {"recipe": "byol",                        # a named starting point (default "simclr")
     "blur_sigma": [0.1, 2.0],                # a setting for every view
     "global": {"scale": [0.2, 1.0]},         # for the global views
     "local": {"crop_size": 96},              # for the local (multi-crop) views
     "view2": {"solarize_p": 0.2}}            # for one view

Views are numbered from 1, global views first, then the local ones (``view1`` and ``view2`` are
the two global views of a two-view method). Layers apply in this order, later ones winning: the
defaults, then the recipe's own settings (all views, group, view), then the given ones (all
views, group, view). ``strength`` is a shorthand that sets brightness, contrast and saturation
to 0.8·strength and hue to 0.2·strength; explicit values in the same layer win over it.

Defaults (the ``simclr`` recipe): crop ``image_size`` at the dataset's crop scale, or (0.08, 1),
or (0.14, 1) when there are local views; local crops ⌊3/7·image_size⌋ px (96 at 224) at
(0.05, 0.14); ratio (3/4, 4/3); the dataset's flip p; jitter p 0.8 at strength 0.5; grayscale
0.2; blur p 0.5 from 96 px up (else 0), σ ∈ (0.1, 2), kernel ≈ 10% of the crop; no solarize;
the dataset's mean and std; ``DEFAULT_JITTER_MODE``. One-channel images get no jitter and no
grayscale by default. The ``local_size`` option counts as a given local ``crop_size``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from .augment import DEFAULT_JITTER_MODE, JITTER_MODES, ViewSpec

__all__ = [
    "GROUPS",
    "RECIPES",
    "SETTINGS",
    "normalize_augment",
    "resolve_views",
    "set_augment_key",
    "views_as_dicts",
]

GROUPS = ("global", "local")
_VIEW = re.compile(r"view([1-9][0-9]*)")
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    return float(raw)


def _optional_int(raw: Any) -> int | None:
    if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "auto")):
        return None
    value = _number(raw)
    if value != int(value):
        raise ValueError("expected a whole number")
    return int(value)


def _numbers(raw: Any) -> tuple[float, ...]:
    if isinstance(raw, str):
        raw = [part for part in raw.strip("()[] ").split(",") if part.strip()]
    if not isinstance(raw, Sequence) or not raw:
        raise ValueError("expected a list of numbers")
    return tuple(_number(value) for value in raw)


def _pair(raw: Any) -> tuple[float, float]:
    values = _numbers(raw)
    if len(values) != 2:
        raise ValueError("expected two numbers (low, high)")
    return values[0], values[1]


def _stats(raw: Any) -> tuple[float, ...] | None:
    """Normalisation statistics; None or ``dataset`` for the dataset's own."""
    if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "dataset")):
        return None
    return _numbers(raw)


def _jitter_mode(raw: Any) -> str:
    if raw not in JITTER_MODES:
        raise ValueError(f"expected one of {', '.join(JITTER_MODES)}")
    return str(raw)


SETTINGS: dict[str, Callable[[Any], Any]] = {
    "crop_size": _optional_int,
    "scale": _pair,
    "ratio": _pair,
    "flip_p": _number,
    "jitter_p": _number,
    "strength": _number,
    "brightness": _number,
    "contrast": _number,
    "saturation": _number,
    "hue": _number,
    "jitter_mode": _jitter_mode,
    "grayscale_p": _number,
    "blur_p": _number,
    "blur_sigma": _pair,
    "blur_kernel": _optional_int,
    "solarize_p": _number,
    "solarize_threshold": _number,
    "mean": _stats,
    "std": _stats,
}
"""Each setting a group, a view or the whole augmentation may give, and its parser."""

_SEED_COMMON = {"jitter_p": 0.8, "grayscale_p": 0.2, "flip_p": 0.5, "blur_sigma": (0.1, 2.0)}
_SEED002 = {
    **_SEED_COMMON,
    "scale": (0.2, 1.0),
    "strength": 1.0,
    "blur_p": 0.5,
    "blur_kernel": 23,
    "mean": _IMAGENET_MEAN,
    "std": _IMAGENET_STD,
}

RECIPES: dict[str, dict[str, Any]] = {
    "simclr": {},
    "byol": {
        "strength": 0.5,
        "saturation": 0.2,
        "view1": {"blur_p": 1.0, "solarize_p": 0.0},
        "view2": {"blur_p": 0.1, "solarize_p": 0.2},
    },
    # lightly 1.5.5 SimCLRTransform defaults
    "seed000": {
        **_SEED_COMMON,
        "scale": (0.08, 1.0),
        "strength": 1.0,
        "blur_p": 0.5,
        "mean": _IMAGENET_MEAN,
        "std": _IMAGENET_STD,
    },
    "seed002": _SEED002,
    "seed002_multicrop": {
        **_SEED002,
        "global": {"scale": (0.14, 1.0)},
        "local": {"crop_size": 96, "scale": (0.05, 0.14)},
    },
    "seed003_stl10": {
        **_SEED_COMMON,
        "scale": (0.08, 1.0),
        "brightness": 0.5,
        "contrast": 0.5,
        "saturation": 0.5,
        "hue": 0.1,
        "blur_p": 1.0,
        "blur_kernel": 9,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
    },
    "seed003_supcon": {
        **_SEED_COMMON,
        "scale": (0.2, 1.0),
        "strength": 0.5,
        "blur_p": 0.0,
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2023, 0.1994, 0.2010),
    },
    "seed004": {
        **_SEED_COMMON,
        "strength": 1.0,
        "blur_p": 1.0,
        "blur_kernel": 9,
        "mean": _IMAGENET_MEAN,
        "std": _IMAGENET_STD,
        "global": {"scale": (0.1, 1.0), "solarize_p": 0.2},
        "local": {"scale": (0.05, 1.0), "solarize_p": 0.0},
    },
}
"""Named augmentations, in the mapping form above (see seed_recipes.md for the seeds)."""


def normalize_augment(raw: Any) -> dict[str, Any]:
    """A checked augmentation mapping from a recipe name or a (possibly nested) mapping.

    Raises ValueError naming the offending key or value and what is valid.
    """
    if raw is None:
        return {}
    if isinstance(raw, str):
        return normalize_augment({"recipe": raw})
    if not isinstance(raw, Mapping):
        raise ValueError(f"augment={raw!r}: expected a recipe name or a mapping")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        out = set_augment_key(out, str(key), value)
    return out


def set_augment_key(augment: Mapping[str, Any], key: str, raw: Any) -> dict[str, Any]:
    """``augment`` with one dotted key set: ``recipe``, ``<setting>``, ``<group>.<setting>``,
    ``view<N>.<setting>``, or ``<group>``/``view<N>`` with a mapping of settings."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in augment.items()}
    head, _, rest = key.partition(".")
    if head == "recipe" and not rest:
        if raw not in RECIPES:
            raise ValueError(f"unknown augment recipe {raw!r}; valid: {', '.join(RECIPES)}")
        out["recipe"] = raw
    elif head in SETTINGS and not rest:
        out[head] = _parse(head, raw, f"augment.{head}")
    elif head in GROUPS or _VIEW.fullmatch(head):
        scope = out.setdefault(head, {})
        items = raw.items() if not rest and isinstance(raw, Mapping) else [(rest, raw)]
        for name, value in items:
            if name not in SETTINGS:
                raise _unknown(f"{head}.{name}")
            scope[name] = _parse(name, value, f"augment.{head}.{name}")
    else:
        raise _unknown(key)
    return out


def _parse(name: str, raw: Any, where: str) -> Any:
    try:
        return SETTINGS[name](raw)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}={raw!r}: {error}") from None


def _unknown(key: str) -> ValueError:
    return ValueError(
        f"unknown augment key {key!r}; valid: recipe, <setting>, global.<setting>, "
        f"local.<setting>, view<N>.<setting> (views from 1); settings: {', '.join(SETTINGS)}"
    )


def resolve_views(
    augment: Mapping[str, Any],
    *,
    image_size: int,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    global_scale: tuple[float, float] | None = None,
    flip_p: float = 0.5,
    n_global: int = 2,
    n_local: int = 0,
    local_size: int | None = None,
) -> list[ViewSpec]:
    """One ViewSpec per view (global first) for images of ``image_size`` px and ``channels``.

    ``mean``, ``std``, ``global_scale`` and ``flip_p`` are the dataset's defaults; ``local_size``
    (the ``local_size`` option) is a given local crop size, before the given ``augment``. Raises
    ValueError for settings that do not fit (a view beyond the last, a blur kernel larger than
    its crop, a p outside [0, 1]).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if n_global < 1 or n_local < 0:
        raise ValueError("need n_global >= 1 and n_local >= 0")
    given = normalize_augment(augment)
    recipe = RECIPES[given.get("recipe", "simclr")]
    n_views = n_global + n_local
    for layer in (recipe, given):
        for key in layer:
            match = _VIEW.fullmatch(key)
            if match and layer is given and int(match.group(1)) > n_views:
                raise ValueError(
                    f"augment.{key}: there are only {n_views} views "
                    f"(n_global={n_global}, n_local={n_local}); views are numbered from 1"
                )
    colour = channels == 3
    base: dict[str, Any] = {
        "ratio": (3 / 4, 4 / 3),
        "flip_p": flip_p,
        "jitter_p": 0.8 if colour else 0.0,
        "strength": 0.5,
        "jitter_mode": DEFAULT_JITTER_MODE,
        "grayscale_p": 0.2 if colour else 0.0,
        "blur_p": 0.5 if image_size >= 96 else 0.0,
        "blur_sigma": (0.1, 2.0),
        "blur_kernel": None,
        "solarize_p": 0.0,
        "solarize_threshold": 0.5,
        "mean": tuple(mean),
        "std": tuple(std),
    }
    group_base = {
        "global": {
            "crop_size": image_size,
            "scale": global_scale or ((0.14, 1.0) if n_local else (0.08, 1.0)),
        },
        "local": {"crop_size": image_size * 3 // 7, "scale": (0.05, 0.14)},
    }
    size_given = {"local": {"crop_size": local_size} if local_size else {}, "global": {}}
    specs = []
    for index in range(n_views):
        group = "global" if index < n_global else "local"
        settings: dict[str, Any] = {}
        layers = [base, group_base[group]]
        for layer in (recipe, given):
            if layer is given:
                layers.append(size_given[group])
            layers += [layer, layer.get(group, {}), layer.get(f"view{index + 1}", {})]
        for layer in layers:
            _apply(settings, {k: v for k, v in layer.items() if k in SETTINGS})
        settings["mean"] = settings["mean"] or tuple(mean)
        settings["std"] = settings["std"] or tuple(std)
        if not colour:
            settings.update(saturation=0.0, hue=0.0)
        specs.append(_spec(settings, f"view{index + 1} ({group})"))
    return specs


def _apply(settings: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """Apply one layer: its ``strength`` first, then its explicit settings."""
    if "strength" in layer:
        s = layer["strength"]
        settings.update(brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s)
    settings.update({k: v for k, v in layer.items() if k != "strength"})


def _spec(settings: Mapping[str, Any], where: str) -> ViewSpec:
    values = {k: v for k, v in settings.items() if k != "crop_size"}
    if settings["mean"] is not None and len(settings["mean"]) != len(settings["std"]):
        raise ValueError(f"augment {where}: mean and std must have as many values")
    try:
        return ViewSpec(size=settings["crop_size"], **values)
    except ValueError as error:
        raise ValueError(f"augment {where}: {error}") from None


def views_as_dicts(specs: Sequence[ViewSpec], n_global: int | None = None) -> list[dict[str, Any]]:
    """Plain (JSON-ready) dicts of resolved view specs, with the blur kernel as used."""
    out = []
    for index, spec in enumerate(specs):
        values = asdict(spec)
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        crop = values.pop("size")
        head: dict[str, Any] = {"view": index + 1}
        if n_global is not None:
            head["group"] = "global" if index < n_global else "local"
        out.append({**head, "crop_size": crop, **values, "blur_kernel": spec.kernel_size})
    return out
