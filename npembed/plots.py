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


def model_graph_nodes(model) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """The model's graph as text, every shape read from the model's layers (B, L symbolic).

    Returns (forward, backward, grads): ``forward`` alternates arrays and layers as
    ``(kind, text)`` pairs, kind "array" or "layer", ending with the loss; ``backward[i]`` is the
    gradient of forward array i (the slices for the embedding's output); ``grads[j]`` is what
    layer j's backward fills in its ``grads``.
    """
    def shape_text(shape) -> str:
        return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")

    shape: tuple = ("B", "L")
    forward = [("array", f"ids {shape_text(shape)}")]
    backward, grads = ["(no gradient:\ntoken ids)"], []
    for layer, symbol in zip(model.layers, ("x", "pooled", "h", "z")):
        activation = getattr(layer, "activation", None)
        weights = "".join(f"\n{key} {shape_text(w.shape)}" for key, w in layer.params.items())
        kind = type(layer).__name__.replace("GlobalAveragePooling1D", "GlobalAverage-\nPooling1D")
        shape = layer.output_shape(shape)
        forward += [("layer", kind + (f" ({activation})" if activation else "") + weights),
                    ("array", f"{symbol} {shape_text(shape)}")]
        backward.append(f"d{symbol} {shape_text(shape)}")
        grads.append("\n".join(f"d{key} {shape_text(w.shape)}" for key, w in layer.params.items()))
    backward[1] = f"slices (B*L, {model.layers[0].output_dim})\nIndexedSlices"
    grads[0] = grads[0] + "\n(as the slices)"
    forward += [("layer", "BinaryCrossentropy\n(from_logits)\nlabels y (B,)"), ("array", "loss ()")]
    backward += ["dloss = 1"]
    return forward, backward, grads


def plot_model_graph(model, path: str | os.PathLike) -> None:
    """The forward graph (arrays and layers, every shape) above the backward pass."""
    plt = _pyplot()
    forward, backward, grads = model_graph_nodes(model)
    fig, ax = plt.subplots(figsize=(17, 5.5))
    ax.set_xlim(-0.7, len(forward) - 0.3)
    ax.set_ylim(-2.3, 2.0)
    ax.axis("off")
    array_box = dict(boxstyle="round,pad=0.35", fc="#dbe9f6", ec="#2f6ea5")
    layer_box = dict(boxstyle="square,pad=0.4", fc="#fbe3c6", ec="#b86b12")
    gradient_box = dict(boxstyle="round,pad=0.35", fc="#f8d7d7", ec="#a52f2f")

    def arrow(source, target, color):
        ax.annotate("", xy=(0, 0.5) if color == "#444" else (1, 0.5), xycoords=target,
                    xytext=(1, 0.5) if color == "#444" else (0, 0.5), textcoords=source,
                    arrowprops=dict(arrowstyle="->", color=color, shrinkA=4, shrinkB=4))

    nodes = [ax.text(i, 1.0, text, ha="center", va="center", fontsize=8.5,
                     bbox=array_box if kind == "array" else layer_box)
             for i, (kind, text) in enumerate(forward)]
    for source, target in zip(nodes, nodes[1:]):
        arrow(source, target, "#444")
    arrays = [nodes[i] for i in range(0, len(forward), 2)]
    gradients = [ax.text(array.get_position()[0], -1.0, text, ha="center", va="center", fontsize=8.5,
                         bbox=gradient_box) for array, text in zip(arrays, backward)]
    for target, source in zip(gradients[1:], gradients[2:]):
        arrow(source, target, "#a52f2f")
    for j, text in enumerate(grads):
        if text:
            ax.text(2 * j + 1, -1.0, text, ha="center", va="center", fontsize=8.5, color="#a52f2f",
                    bbox=dict(boxstyle="square,pad=0.3", fc="white", ec="#a52f2f", ls=":"))
    ax.text((len(forward) - 1) / 2, 1.85, "forward: layer.forward(x) -> out, caching what backward needs",
            ha="center", fontsize=10)
    ax.text((len(forward) - 1) / 2, -2.15, "backward, right to left: layer.backward(dout) -> dx "
            "(red boxes), filling layer.grads (dotted boxes)", ha="center", fontsize=10)
    ax.add_patch(plt.Rectangle((0.5, 0.3), 3.0, 1.35, fill=False, ls="--", ec="#555"))
    ax.text(2.0, 0.15, "PooledEmbedding, the default step: pooled = C @ E / n and dE = C.T @ g\n"
            "with C (B, U) the row counts, g = dpooled / n: no (B, L, D) array", ha="center", va="top",
            fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)

# The tutorial's forward pass one operation at a time: (input array, operation, the weights it
# reads, its local gradient: how backward turns d(its output) into d(its inputs)).
OPERATIONS = [
    ("ids (B, L)", "lookup\nx = E[ids]", "E (V, D)",
     "dE[r] = sum of dx[b, i]\nover ids[b, i] = r\n(scatter-add; ids: none)"),
    ("x (B, L, D)", "mean over i\npooled = x.sum(1) / L", "",
     "dx[b, i] = dpooled[b] / L\n(one value fans out\nto L positions)"),
    ("pooled (B, D)", "affine\nz1 = pooled @ W1 + b1", "W1 (D, H), b1 (H,)",
     "dpooled = dz1 @ W1.T\ndW1 = pooled.T @ dz1\ndb1 = dz1.sum(0)"),
    ("z1 (B, H)", "ReLU\nh = max(z1, 0)", "",
     "dz1 = dh * [z1 > 0]\n(0 at z1 = 0: a kink)"),
    ("h (B, H)", "affine\nz = h @ W2 + b2", "W2 (H, 1), b2 (1,)",
     "dh = dz @ W2.T\ndW2 = h.T @ dz\ndb2 = dz.sum(0)"),
    ("z (B, 1)", "mean sigmoid\ncross-entropy", "y (B, 1)",
     "dz = (p - y) / B\np = sigmoid(z)"),
]


def plot_operation_graph(path: str | os.PathLike) -> None:
    """The forward pass as operations (ReLU its own node), each with its local gradient below it:
    backward multiplies the incoming gradient by it, right to left."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(19, 4.6))
    n = len(OPERATIONS)
    ax.set_xlim(-0.5, 2 * n + 0.5)
    ax.set_ylim(-2.0, 2.2)
    ax.axis("off")
    array_box = dict(boxstyle="round,pad=0.35", fc="#dbe9f6", ec="#2f6ea5")
    op_box = dict(boxstyle="round4,pad=0.4", fc="#fbe3c6", ec="#b86b12")
    weight_box = dict(boxstyle="round,pad=0.3", fc="#e6f2e1", ec="#3f7f2f")
    grad_box = dict(boxstyle="square,pad=0.35", fc="white", ec="#a52f2f")
    def arrow(source, target, color="#444", sideways=True):
        ax.annotate("", xy=(0, 0.5) if sideways else (0.5, 1), xycoords=target,
                    xytext=(1, 0.5) if sideways else (0.5, 0), textcoords=source,
                    arrowprops=dict(arrowstyle="->", color=color, shrinkA=4, shrinkB=4))

    chain = []
    for j, (array, operation, weights, local) in enumerate(OPERATIONS):
        chain.append(ax.text(2 * j, 0.4, array, ha="center", va="center", fontsize=8.5, bbox=array_box))
        chain.append(ax.text(2 * j + 1, 0.4, operation, ha="center", va="center", fontsize=7.5, bbox=op_box))
        if weights:
            weight = ax.text(2 * j + 1, 1.75, weights, ha="center", va="center", fontsize=8.5, bbox=weight_box)
            arrow(weight, chain[-1], "#3f7f2f", sideways=False)
        ax.text(2 * j + 1, -0.95, local, ha="center", va="center", fontsize=8, color="#a52f2f", bbox=grad_box)
    chain.append(ax.text(2 * n, 0.4, "loss ()", ha="center", va="center", fontsize=8.5, bbox=array_box))
    for source, target in zip(chain, chain[1:]):
        arrow(source, target)
    ax.text(n, -1.85, "backward, right to left: each operation turns the gradient arriving from its right "
            "into its inputs' gradients by its local rule (red).\nA weight every review uses (W1, b1, ...) "
            "sums the reviews' contributions: gradients add at forks; a broadcast forward is a sum backward.",
            ha="center", fontsize=9.5)
    ax.text(n, 2.1, "forward, left to right: arrays (blue), operations (orange), weights (green)",
            ha="center", fontsize=10)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3 or sys.argv[1] not in ("model-graph", "operation-graph"):
        sys.exit("usage: python -m npembed.plots model-graph|operation-graph OUT.png")
    if sys.argv[1] == "operation-graph":
        plot_operation_graph(sys.argv[2])
    else:
        import npembed
        plot_model_graph(npembed.tutorial_model(seed=0), sys.argv[2])
    print(f"wrote {sys.argv[2]}")
