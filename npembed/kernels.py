"""Hot paths, each beside the plain reference version that the tests prove it equal to.

A reader who wants the math should read ``layers.py`` and ``optimizers.py``; this module only
makes the same arithmetic cheaper.  Every fast function here names its reference and states
how close the two are (bit for bit, or a tolerance and why).
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- scatter-add
def scatter_add_rows_reference(indices: np.ndarray, values: np.ndarray, num_rows: int) -> np.ndarray:
    """``out[indices[k]] += values[k]`` for every k, in order, in ``values.dtype``.

    indices: (n,) ints in [0, num_rows); values: (n, d).  Returns (num_rows, d).
    """
    out = np.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    np.add.at(out, indices, values)
    return out


def scatter_add_rows(indices: np.ndarray, values: np.ndarray, num_rows: int) -> np.ndarray:
    """Same as :func:`scatter_add_rows_reference`, through one ``np.bincount``.

    The flat index ``indices[k] * d + j`` names entry (row, column); bincount sums the weights
    that share a flat index in float64 and in slice order, so float64 input gives the reference
    bit for bit, and float32 input gives each sum correctly rounded once (the reference rounds
    after every addition: they differ by a few float32 ulps of a row's largest partial sum).
    """
    n, d = values.shape
    flat = (np.asarray(indices, dtype=np.int64)[:, None] * d + np.arange(d)).ravel()
    summed = np.bincount(flat, weights=values.ravel(), minlength=num_rows * d)
    return summed.reshape(num_rows, d).astype(values.dtype, copy=False)


# --------------------------------------------------------------------------- Adam
def adam_update_reference(weight, m, v, grad, squared_grad, alpha, one_minus_beta_1,
                          one_minus_beta_2, epsilon) -> None:
    """Keras's four lines, as written (in place on weight, m, v)::

        m += (g - m) * (1 - beta_1)
        v += (S - v) * (1 - beta_2)          S = squared_grad, or g**2 when it is None
        w -= m * alpha / (sqrt(v) + epsilon)
    """
    squared = np.square(grad) if squared_grad is None else squared_grad
    m += (grad - m) * one_minus_beta_1
    v += (squared - v) * one_minus_beta_2
    weight -= m * alpha / (np.sqrt(v) + epsilon)


def adam_update(weight, m, v, grad, squared_grad, alpha, one_minus_beta_1,
                one_minus_beta_2, epsilon) -> None:
    """:func:`adam_update_reference` with one scratch buffer instead of a temporary per
    operation; the same operations in the same order, so bit for bit equal."""
    scratch = np.subtract(grad, m)
    scratch *= one_minus_beta_1
    m += scratch
    if squared_grad is None:
        np.square(grad, out=scratch)
    else:
        scratch[...] = squared_grad
    scratch -= v
    scratch *= one_minus_beta_2
    v += scratch
    np.sqrt(v, out=scratch)
    scratch += epsilon
    np.divide(m * alpha, scratch, out=scratch)
    weight -= scratch
