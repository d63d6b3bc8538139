"""YAML presets shipped with the package; `--config NAME` finds them by name."""
