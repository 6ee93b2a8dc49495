"""Sparse gradients of an embedding table, as TensorFlow's ``IndexedSlices``.

One slice per looked-up position, padding included: ``values[k]`` is the gradient that
position ``k`` of the flattened batch sends to row ``indices[k]`` of the table.  A token that
appears three times contributes three slices; the dense gradient is their scatter-sum.

Two representations share one interface (``values``, ``indices``, ``dense_shape``,
``to_dense()``, ``squared_sum()``, ``row_sums()``):

- ``IndexedSlices``: the slices stored as they are (what ``Embedding.backward`` produces);
- ``PooledSlices``: the slices of an embedding followed by average pooling, kept factored.
  There every slice of review b is the same vector ``g[b] = dpooled[b] / L`` (or ``/ n[b]`` on
  its non-padding positions when masked), so the row sums are two small matrix products with a
  (B, rows) count matrix instead of a scatter over B*L slices.  The training step uses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from npembed import kernels


@dataclass(frozen=True)
class IndexedSlices:
    """Sparse rows of a ``dense_shape`` tensor.

    values:      (n_slices, output_dim)
    indices:     (n_slices,) int64, row of the table each slice belongs to (may repeat)
    dense_shape: (input_dim, output_dim)
    """

    values: np.ndarray
    indices: np.ndarray
    dense_shape: tuple[int, int]

    def to_dense(self) -> np.ndarray:
        """Scatter-add the slices into a zero table: ``dense[r] = sum_{k: indices[k]=r} values[k]``."""
        return kernels.scatter_add_rows(self.indices, self.values, self.dense_shape[0])

    def squared_sum(self) -> np.ndarray:
        """``S[r] = sum_{k: indices[k]=r} values[k]**2``: the square of each slice, then summed.

        This is what Keras 3's Adam adds to its second moment for a sparse gradient (tf.keras 2's
        adds ``to_dense()**2``, the square of the summed slices); the two differ when a row is
        looked up more than once.
        """
        return kernels.scatter_add_rows(self.indices, np.square(self.values), self.dense_shape[0])

    def row_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, sums, squared sums) over the distinct looked-up rows, rows ascending."""
        rows = np.unique(self.indices)
        return rows, self.to_dense()[rows], self.squared_sum()[rows]


class PooledSlices:
    """The IndexedSlices of ``Embedding -> GlobalAveragePooling1D``, in factored form.

    ids:      (B, L) token ids
    dpooled:  (B, D) gradient of the loss w.r.t. the pooled output
    mask:     (B, L) bool or None; without it every position weighs 1/L, with it the
              non-padding positions weigh 1/n[b] and the padding positions 0.

    Slice (b, i) is ``a[b, i] * dpooled[b]``, where ``a[b, i]`` is position (b, i)'s weight in
    review b's average: 1/L without a mask, ``mask[b, i] / n[b]`` with one
    (``n[b] = sum_i mask[b, i]``); equal to what ``GlobalAveragePooling1D.backward``
    followed by ``Embedding.backward`` produce (tests/test_kernels.py proves it).
    """

    def __init__(self, ids: np.ndarray, dpooled: np.ndarray, mask: np.ndarray | None, input_dim: int,
                 memo=None):
        self.ids = ids
        self.mask = mask
        self._memo = memo                                 # from kernels.pooled_lookup's forward
        self.dense_shape = (input_dim, dpooled.shape[1])
        if mask is None:
            self.row_gradient = dpooled / dpooled.dtype.type(ids.shape[1])                 # (B, D)
        else:
            self.row_gradient = dpooled / mask.sum(axis=1).astype(dpooled.dtype)[:, None]

    @property
    def indices(self) -> np.ndarray:
        return self.ids.reshape(-1)

    @property
    def values(self) -> np.ndarray:
        """(B*L, D): the slices, materialised (for inspection; the training step never needs it)."""
        batch, length = self.ids.shape
        values = np.repeat(self.row_gradient, length, axis=0)
        if self.mask is not None:
            values *= self.mask.reshape(-1, 1)
        return values

    @cached_property
    def _row_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return kernels.pooled_row_sums(self.ids, self.mask, self.row_gradient, self.dense_shape[0],
                                       self._memo)

    def row_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """rows (U,) ascending, sum of slices (U, D), sum of squared slices (U, D).

        ``sums[u] = sum_b counts[b, u] * g[b]`` and ``squared[u] = sum_b counts[b, u] * g[b]**2``,
        where ``counts[b, u]`` is how many (non-padding, when masked) positions of review b hold
        row ``rows[u]`` (``kernels.pooled_row_sums``).
        """
        return self._row_sums

    def to_dense(self) -> np.ndarray:
        rows, sums, _ = self.row_sums()
        dense = np.zeros(self.dense_shape, dtype=self.row_gradient.dtype)
        dense[rows] = sums
        return dense

    def squared_sum(self) -> np.ndarray:
        rows, _, squared = self.row_sums()
        dense = np.zeros(self.dense_shape, dtype=self.row_gradient.dtype)
        dense[rows] = squared
        return dense
