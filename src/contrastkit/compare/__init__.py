"""`contrastkit compare`: several losses pretrained under one budget, evaluated alike, tabulated."""

from .grid import BASELINES, DEFAULT_LOSSES, CompareSpec, parse_list, run_grid
from .report import epochs_to_fraction, markdown_table, summarize

__all__ = [
    "BASELINES",
    "DEFAULT_LOSSES",
    "CompareSpec",
    "epochs_to_fraction",
    "markdown_table",
    "parse_list",
    "run_grid",
    "summarize",
]
