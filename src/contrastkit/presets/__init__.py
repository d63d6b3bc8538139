"""YAML presets shipped with the package; `--config NAME` finds them by name.

A preset's name is its path below this folder without `.yaml`: `cifar100_dhel`,
`seed000/dhel`.
"""

from __future__ import annotations

from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent


def preset_names() -> list[str]:
    """Every shipped preset's name, sorted."""
    return sorted(p.relative_to(PRESETS_DIR).with_suffix("").as_posix() for p in _files())


def preset_path(name: str) -> Path | None:
    """The file of preset `name` (a trailing `.yaml` is allowed), or None if there is none."""
    stem = name.removesuffix(".yaml")
    path = PRESETS_DIR / f"{stem}.yaml"
    inside = path.resolve().is_relative_to(PRESETS_DIR)  # no `../` out of the folder
    return path if inside and path.is_file() else None


def _files() -> list[Path]:
    return [p for p in PRESETS_DIR.rglob("*.yaml") if not p.name.startswith(".")]
