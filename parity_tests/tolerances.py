"""Every parity tolerance, in one place, with the reason for it (docs/parity.md explains more).

float32: the two sides do the same arithmetic in a different order.  TensorFlow's reduce_mean,
matmul (oneDNN or Eigen) and its IndexedSlices -> dense sum (unsorted_segment_sum) add in their
own order; NumPy uses pairwise summation and BLAS.  A float32 sum of n terms can differ by about
n * 2**-24 of the terms' magnitude, so outputs agree to a few 1e-7 relative, and the padding row
of the embedding gradient (a sum of thousands of slices) to about 1e-4 of its size.
float64: the same reasoning with 2**-53: about 1e-15 relative, 1e-12 for long sums.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tol:
    rtol: float
    atol: float
    why: str
    scaled: float = 0.0   # adds scaled * max|expected| to atol: normwise, for sums that cancel

    def atol_for(self, expected) -> float:
        import numpy as np
        return self.atol + self.scaled * float(np.max(np.abs(expected), initial=0.0))


FLOAT32 = {
    # a gather: the same bits on both sides
    "embedding": Tol(0, 0, "a row lookup copies values: exact"),
    "global_average_pooling1d": Tol(1e-5, 1e-8, "mean of up to 4k float32 values, different order"),
    "dense": Tol(1e-5, 1e-7, "16-term dot products after the pooled input's rounding"),
    "dense_1": Tol(1e-5, 1e-7, "16-term dot product"),
    "loss": Tol(1e-6, 1e-7, "mean of 10 stable cross-entropies"),
    "grad": Tol(0, 1e-9, "gradients inherit the forward pass's rounding (TF's float32 mean over a "
                         "3,944-token review is off by up to ~1e-5 relative) and sum over the batch "
                         "with cancellation: compared normwise, to 1e-4 of the tensor's largest entry",
                scaled=1e-4),
    "slices": Tol(1e-5, 1e-10, "each slice is dpooled / L: one division"),
    "adam_weights": Tol(0, 2e-6, "an Adam step is lr * m/(sqrt(v)+eps) with |step| <= ~lr; entries "
                                 "whose gradient is near eps/sqrt(1-beta_2) turn gradient rounding into "
                                 "step differences of a few ulps of lr"),
    "adam_moments": Tol(1e-4, 1e-12, "m and v are linear in g and in slice**2"),
}

FLOAT64 = {
    "embedding": Tol(0, 0, "a row lookup copies values: exact"),
    "global_average_pooling1d": Tol(1e-13, 1e-17, "mean of up to 4k float64 values"),
    "dense": Tol(1e-13, 1e-16, "dot products"),
    "dense_1": Tol(1e-13, 1e-16, "dot product"),
    "loss": Tol(1e-14, 1e-16, "mean of 10 values"),
    "grad": Tol(1e-10, 1e-17, "the padding row sums thousands of slices"),
    "slices": Tol(1e-14, 1e-18, "one division"),
    "adam_weights": Tol(0, 1e-13, "as float32, scaled by 2**-29"),
    "adam_moments": Tol(1e-10, 1e-20, "linear in g and slice**2"),
    "trajectory_loss": Tol(1e-13, 0, "200 Adam steps: measured 2e-15 relative; rounding compounds slowly"),
    "trajectory_weights": Tol(0, 1e-12, "200 Adam steps: measured 5e-14"),
}


def get(dtype: str, name: str) -> Tol:
    return (FLOAT32 if dtype == "float32" else FLOAT64)[name]
