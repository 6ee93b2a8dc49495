"""The tutorial's two training figures and a 2-D map of the embedding (matplotlib, lazily)."""
from __future__ import annotations

import os

import numpy as np

from npembed.atomic import atomic_write_with


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'npembed[train]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def check_figure_path(path: str | os.PathLike) -> None:
    """Refuse, before any work, a figure path matplotlib cannot write: a folder, an unknown
    extension, or a place that cannot be written."""
    from pathlib import Path

    from npembed.atomic import writable_folder
    from npembed.errors import UsageError
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder: give a file name such as {path / 'embedding_map.png'}")
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase
    formats = FigureCanvasBase.get_supported_filetypes()
    extension = path.suffix.lstrip(".").lower()
    if extension not in formats:
        raise UsageError(f"{path}: {'no' if not extension else 'unknown'} image format "
                         f"{extension!r}; use one of {', '.join(sorted(formats))}")
    writable_folder(path.parent, "folder for the figure")


def plot_history(history: dict[str, list[float]], metric: str, path: str | os.PathLike) -> None:
    """Training and validation ``metric`` per epoch, as the tutorial plots them."""
    plt = _pyplot()
    epochs = np.arange(1, len(history[metric]) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history[metric], "bo", label=f"Training {metric}")
    if f"val_{metric}" in history:
        ax.plot(epochs, history[f"val_{metric}"], "b", label=f"Validation {metric}")
    ax.set_title(f"Training and validation {metric}")
    ax.set_xlabel("Epochs")
    ax.set_ylabel(metric.capitalize())
    ax.legend()
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def plot_embedding_map(table: np.ndarray, labels: list[str], rows: np.ndarray, path: str | os.PathLike,
                       title: str = "Embedding, first two principal components") -> None:
    """Scatter ``rows`` of the table projected on their first two principal components, labelled."""
    plt = _pyplot()
    points = table[rows].astype(np.float64)
    centred = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ components[:2].T
    fig, ax = plt.subplots(figsize=(12, 10))
    ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.4)
    for (x, y), label in zip(xy, labels):
        ax.annotate(label.replace("_", "·"), (x, y), fontsize=7, alpha=0.8)
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
