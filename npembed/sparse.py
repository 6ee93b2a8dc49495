"""``IndexedSlices``: the sparse gradient of an embedding table, as TensorFlow represents it.

One slice per looked-up position, padding included: ``values[k]`` is the gradient that
position ``k`` of the flattened batch sends to row ``indices[k]`` of the table.  A token that
appears three times contributes three slices; the dense gradient is their scatter-sum.
"""
from __future__ import annotations

from dataclasses import dataclass

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

        This is what Keras's Adam adds to its second moment for a sparse gradient, which is not
        ``to_dense()**2`` when a row is looked up more than once.
        """
        return kernels.scatter_add_rows(self.indices, np.square(self.values), self.dense_shape[0])
