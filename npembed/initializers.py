"""Weight initializers, as Keras's, drawn from a seeded ``numpy.random.Generator``.

TensorFlow's random streams cannot be reproduced in NumPy, so the *distributions* match Keras
and the *values* do not: to compare with Keras, copy weights across with ``set_weights``.
"""
from __future__ import annotations

import numpy as np


def random_uniform(shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype,
                   minval: float = -0.05, maxval: float = 0.05) -> np.ndarray:
    """Keras ``RandomUniform(-0.05, 0.05)``, the ``Embedding`` default."""
    return rng.uniform(minval, maxval, size=shape).astype(dtype)


def glorot_uniform(shape: tuple[int, int], rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """Keras ``GlorotUniform`` for a ``(fan_in, fan_out)`` kernel: U(-limit, limit),
    ``limit = sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Keras ``Zeros``, the ``Dense`` bias default."""
    return np.zeros(shape, dtype=dtype)


def orthogonal(shape: tuple[int, int], rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """Keras ``Orthogonal`` (gain 1), the LSTM's ``recurrent_kernel`` default: the Q of the QR
    decomposition of a standard normal (max(r, c), min(r, c)) matrix, its columns' signs fixed
    by R's diagonal (so Q is uniform over the orthogonal matrices), transposed when r < c:
    orthonormal rows (U, 4U) or columns."""
    rows, cols = shape
    normal = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(normal)
    q *= np.sign(np.diag(r))
    return np.ascontiguousarray(q.T if rows < cols else q, dtype=dtype)
