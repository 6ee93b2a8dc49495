"""Adam, exactly as Keras 3 applies it, and two named variants that are not Keras.

Keras 3 (``keras/src/optimizers/adam.py``, ``update_step``), per weight w with gradient g, at
step ``t = iterations + 1``:

    alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
    m    += (g - m) * (1 - beta_1)
    v    += (S - v) * (1 - beta_2)
    w    -= m * alpha / (sqrt(v) + epsilon)

with ``S = g**2`` for a dense gradient.  For the embedding, whose gradient TensorFlow delivers as
``IndexedSlices`` (one slice per looked-up position), ``ops.square`` squares each *slice* and the
subtraction then sums them: ``S[r] = sum_k slice_k**2`` over the lookups of row r, which is not
``(sum_k slice_k)**2`` when a row is looked up twice.  Every row moves every step (m and v
decay, and w keeps moving with the decayed m), including rows that are not in the batch.

Constants, matched on purpose (they matter in float64, see docs/parity.md):
``beta_1**t`` and ``beta_2**t`` use beta rounded to float32 (``ops.cast`` of a Python float goes
through a float32 tensor); the learning rate is a variable of Keras's floatx, which npembed
takes to be the model's dtype; ``1 - beta`` and epsilon are Python doubles converted straight to
the weight's dtype.

Variants (``Adam(variant=...)``):
- ``"keras"`` (default): the above.
- ``"textbook"``: ``S = g**2`` of the summed embedding gradient (Kingma & Ba); not Keras-exact.
- ``"lazy"``: like ``"keras"``, but for a sparse gradient only the rows looked up in the batch
  update m, v and w (TF-Addons LazyAdam); untouched rows stay frozen.  Not Keras-exact; its step
  cost does not grow with the vocabulary.
"""
from __future__ import annotations

from typing import Protocol, Sequence, Union

import numpy as np

from npembed import kernels


class SparseRowGradient(Protocol):
    """What the optimizer needs from a sparse gradient (``IndexedSlices`` and ``PooledSlices``
    provide it): the distinct rows, the sum of their slices and the sum of their squared slices."""

    def row_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


Gradient = Union[np.ndarray, SparseRowGradient]


class Adam:
    VARIANTS = ("keras", "textbook", "lazy")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, variant: str = "keras"):
        if variant not in self.VARIANTS:
            raise ValueError(f"Adam variant must be one of {self.VARIANTS}, got {variant!r}")
        for name, value, low, high in (("learning_rate", learning_rate, 0, np.inf),
                                       ("beta_1", beta_1, 0, 1), ("beta_2", beta_2, 0, 1),
                                       ("epsilon", epsilon, 0, np.inf)):
            if not (low < value < high) and not (name.startswith("beta") and value == 0):
                raise ValueError(f"Adam {name} must be in ({low}, {high}), got {value!r}")
        self.learning_rate = float(learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.variant = variant
        self.iterations = 0
        self.momentums: list[np.ndarray] = []
        self.velocities: list[np.ndarray] = []
        self._scratch: list[np.ndarray | None] = []

    def build(self, weights: Sequence[np.ndarray]) -> None:
        """Zero first and second moments shaped like each weight."""
        self.momentums = [np.zeros_like(w) for w in weights]
        self.velocities = [np.zeros_like(w) for w in weights]
        self._scratch: list[np.ndarray | None] = [None] * len(weights)

    def step_size(self, dtype: np.dtype) -> np.ndarray:
        """``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` for the coming step, in dtype."""
        t = dtype.type(self.iterations + 1)
        lr = dtype.type(self.learning_rate)
        beta_1_power = np.power(dtype.type(np.float32(self.beta_1)), t)
        beta_2_power = np.power(dtype.type(np.float32(self.beta_2)), t)
        return lr * np.sqrt(1 - beta_2_power) / (1 - beta_1_power)

    def apply_gradients(self, grads: Sequence[Gradient], weights: Sequence[np.ndarray]) -> None:
        """Update every weight in place from its gradient, then count the step.

        grads[i] is a dense array shaped like weights[i], or a sparse row gradient
        (``IndexedSlices``) for an embedding table.
        """
        if len(grads) != len(weights):
            raise ValueError(f"got {len(grads)} gradients for {len(weights)} weights")
        if not self.momentums:
            self.build(weights)
        constants: dict[np.dtype, tuple] = {}        # the step's scalars, once per dtype
        for index, (weight, grad) in enumerate(zip(weights, grads)):
            dtype = weight.dtype
            if dtype not in constants:
                constants[dtype] = (self.step_size(dtype), dtype.type(1 - self.beta_1),
                                    dtype.type(1 - self.beta_2), dtype.type(self.epsilon))
            self._update(index, weight, grad, *constants[dtype])
        self.iterations += 1

    def _update(self, index: int, weight: np.ndarray, grad: Gradient, alpha, one_minus_beta_1,
                one_minus_beta_2, epsilon) -> None:
        m, v = self.momentums[index], self.velocities[index]
        dtype = weight.dtype
        if isinstance(grad, np.ndarray):
            kernels.adam_update(weight, m, v, grad, None, alpha, one_minus_beta_1, one_minus_beta_2, epsilon)
            return
        rows, grad_rows, squared_rows = grad.row_sums()
        grad_rows = grad_rows.astype(dtype, copy=False)
        squared_rows = squared_rows.astype(dtype, copy=False)
        if self.variant == "textbook":
            squared_rows = np.square(grad_rows)
        if self.variant == "lazy":
            kernels.adam_update_lazy_rows(weight, m, v, rows, grad_rows, squared_rows, alpha,
                                          one_minus_beta_1, one_minus_beta_2, epsilon)
        else:
            if self._scratch[index] is None and kernels.backend() == "numpy":
                self._scratch[index] = (np.empty_like(weight), np.empty_like(weight))
            kernels.adam_update_rows(weight, m, v, rows, grad_rows, squared_rows, alpha, one_minus_beta_1,
                                     one_minus_beta_2, epsilon, self._scratch[index])

    def get_state(self) -> dict:
        """Everything needed to resume: the step count and both moments (copies)."""
        return {"iterations": self.iterations,
                "momentums": [m.copy() for m in self.momentums],
                "velocities": [v.copy() for v in self.velocities]}

    def set_state(self, state: dict) -> None:
        self.iterations = int(state["iterations"])
        self.momentums = [np.array(m) for m in state["momentums"]]
        self.velocities = [np.array(v) for v in state["velocities"]]
        self._scratch = [None] * len(self.momentums)

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "variant": self.variant}
