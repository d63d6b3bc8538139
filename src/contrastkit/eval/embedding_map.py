"""A 2-D map of features coloured by class, as a PNG: t-SNE, or UMAP when it is installed."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from ..fileio import atomic_write_bytes

LEGEND_MAX_CLASSES = 20
"""With more classes than this the map has no legend, and colours come from a continuous map."""


def project_2d(features: Tensor, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates of `features` (N >= 2), and the method's name (`umap` or `tsne`)."""
    points = features.double().numpy()
    if importlib.util.find_spec("umap") is not None:
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(points), "umap"
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(points) - 1) / 3)  # t-SNE needs perplexity < N
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(points), "tsne"


def save_embedding_map(
    features: Tensor,
    labels: Tensor,
    classes: Sequence[str],
    path: Path,
    title: str,
    seed: int = 0,
) -> str:
    """Draw the 2-D map of `features` coloured by `labels` into the PNG `path`; returns the
    projection method."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points, method = project_2d(features, seed)
    figure = Figure(figsize=(6.5, 6), layout="constrained")
    FigureCanvasAgg(figure)  # the Agg backend, without touching pyplot's global state
    axes = figure.add_subplot()
    n = len(classes)
    palette = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    y = labels.numpy()
    for index, name in enumerate(classes):
        members = y == index
        if members.any():
            colour = palette(index) if n <= LEGEND_MAX_CLASSES else palette(index / max(1, n - 1))
            axes.scatter(*points[members].T, s=6, color=colour, label=name, linewidths=0)
    if n <= LEGEND_MAX_CLASSES:
        axes.legend(markerscale=3, fontsize="small", loc="center left", bbox_to_anchor=(1, 0.5))
    axes.set_title(f"{title} ({method})", fontsize="medium")
    axes.set_xticks([])
    axes.set_yticks([])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return method
