"""Central finite differences in float64, to check any backward by hand.

    df/dw[i] ~ (f(w + h e_i) - f(w - h e_i)) / (2 h)        error O(h^2) + O(eps_machine / h)

With h = 1e-5 in float64 the truncation and rounding errors are both near 1e-10 of the scale
of f, far below the 1e-6 relative error that the tests demand.  Run checks on float64 models:
in float32 the rounding term alone is about 1e-3.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Normwise relative error ``||a - b|| / max(||a|| + ||b||, 1e-300)`` (0 when both are 0).

    Normwise rather than elementwise: a gradient with entries near zero would otherwise report
    the finite-difference noise of those entries as a large relative error.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = np.linalg.norm(a) + np.linalg.norm(b)
    if denominator == 0:
        return 0.0
    return float(np.linalg.norm(a - b) / denominator)


def numerical_gradient(f: Callable[[], float], array: np.ndarray, indices: Iterable[tuple] | None = None,
                       h: float = 1e-5) -> np.ndarray:
    """d f() / d array by central differences, perturbing ``array`` in place and restoring it.

    f:       a function of no argument that reads ``array`` (a float64 weight, say) and returns
             a scalar.
    indices: the entries to check (all of them by default); the others are left 0.
    Returns an array shaped like ``array``.
    """
    if array.dtype != np.float64:
        raise TypeError(f"finite differences need float64 to be meaningful, got {array.dtype}; "
                        "build the model with dtype='float64'")
    grad = np.zeros_like(array)
    for index in (np.ndindex(array.shape) if indices is None else indices):
        index = tuple(index)
        original = array[index]
        array[index] = original + h
        f_plus = f()
        array[index] = original - h
        f_minus = f()
        array[index] = original
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


def numerical_input_gradient(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dout: np.ndarray,
                             h: float = 1e-5) -> np.ndarray:
    """CS231n's ``eval_numerical_gradient_array``: d sum(f(x) * dout) / dx for an array input,
    the upstream gradient ``dout`` weighting each output.  Returns an array shaped like x."""
    x = np.array(x, dtype=np.float64)
    return numerical_gradient(lambda: float(np.sum(f(x) * dout)), x, h=h)


def check_model_gradients(model, ids, labels, entries_per_weight: int = 40,
                          rng: np.random.Generator | None = None) -> dict[str, float]:
    """Compare ``model.compute_gradients`` with finite differences of the model's loss.

    For each weight, checks ``entries_per_weight`` entries chosen at random, and for the
    embedding table, entries of the rows the batch looks up (where the gradient lives) plus a
    few rows it does not (where it must be exactly 0).  Returns ``{weight name: rel_error}``.
    """
    rng = rng or np.random.default_rng(0)
    _, grads = model.compute_gradients(ids, labels)
    loss = lambda: model.loss(labels, model.forward(ids))  # noqa: E731
    errors = {}
    looked_up = np.unique(np.asarray(ids))
    for name, weight, grad in zip(model.weight_names, model.weights, grads):
        if name.endswith("/embeddings"):
            rows = np.concatenate([looked_up, rng.choice(weight.shape[0], 5, replace=False)])
        else:
            rows = rng.integers(0, weight.shape[0], entries_per_weight)
        if weight.ndim == 1:
            indices = [(int(r),) for r in rows]
        else:
            cols = rng.integers(0, weight.shape[1], rows.shape[0])
            indices = [(int(r), int(c)) for r, c in zip(rows, cols)]
        numeric = numerical_gradient(loss, weight, indices)
        chosen = tuple(np.array(indices).T)
        errors[name] = rel_error(grad[chosen], numeric[chosen])
    return errors
