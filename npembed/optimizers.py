"""Adam, as each Keras applies it to this model: the tutorial's Keras 2, today's Keras 3, and lazy.

The update, per weight w with gradient g, at step ``t = iterations + 1`` (Kingma & Ba's
algorithm with the bias corrections folded into the step size, as both Kerases write it)::

    alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
    m    += (g - m) * (1 - beta_1)
    v    += (S - v) * (1 - beta_2)
    w    -= m * alpha / (sqrt(v) + epsilon)

``S = g**2`` for a dense gradient.  The Kerases part ways on the embedding, whose gradient
TensorFlow delivers as ``IndexedSlices``: one slice per looked-up position, padding included.
For a row r looked up k times, with slices s_1 .. s_k and summed gradient g_r = sum_i s_i:

- ``"keras2"`` (the default): ``S_r = g_r**2``.  TF 2.1's ``tf.keras`` (the Keras the tutorial
  was run and printed with; today ``tf_keras``) sums duplicate slices before the update
  (``OptimizerV2._resource_apply_sparse_duplicate_indices`` calls ``_deduplicate_indexed_slices``
  in ``tensorflow/python/keras/optimizer_v2/optimizer_v2.py``, then Adam's
  ``_resource_apply_sparse``), so every row's second moment is the square of its summed
  gradient: dense textbook Adam.
- ``"keras3"``: ``S_r = sum_i s_i**2``.  Keras 3 on TensorFlow (``keras/src/optimizers/adam.py``)
  applies ``ops.square`` to the IndexedSlices, squaring each slice, and the following
  subtraction sums them.  Smaller than ``g_r**2`` when the slices agree (a subword repeated in
  one review, and, measured, the padding row: 1/230 to 1/500 of it), larger when they cancel.
  Smaller S means larger steps; on the padding row they make Keras 3 train the tutorial's
  model visibly slower (``benchmarks/adam_variants.py``; docs/gradients.md section 7 and
  docs/gradients_appendix.md section 3).
- ``"lazy"``: ``"keras2"``'s formula on the looked-up rows only (TF-Addons' LazyAdam, which runs
  on Keras 2's summed slices); the other rows' m, v and weights stay as they are.  Neither
  Keras's; its step cost does not grow with the vocabulary.

For dense gradients (the Dense layers) every variant is the same update.  In ``"keras2"`` and
``"keras3"`` every row moves every step: m and v decay, and w keeps moving on the decayed m,
also for rows not in the batch.

Default: ``"keras2"``, here and in ``npembed train``.  It is the Adam of the tutorial npembed
rebuilds (its printed curve is reproduced within 0.013 per epoch), and it is Kingma and Ba's
algorithm, the one the derivations in docs/gradients.md state.  ``Adam(variant="keras3")``
reproduces Keras 3.  The names used before (``"textbook"``, ``"keras"``) are accepted as
aliases of ``"keras2"`` and ``"keras3"``, so old run folders resume.

Constants, matched on purpose (they matter in float64, see docs/parity.md): ``beta_1**t`` and
``beta_2**t`` use beta rounded to float32 (both Kerases ``cast`` a Python float, which goes
through a float32 tensor); the learning rate is a variable of Keras's floatx, which npembed
takes to be the model's dtype; ``1 - beta`` and epsilon are Python doubles converted straight
to the weight's dtype.

The three update lines (m, v, w; alpha comes from :meth:`Adam.step_size`) live once, in
:func:`adam_update`; ``kernels.py`` and ``csrc/adam.c`` hold fast versions that the tests keep
bit for bit equal to it, given the same gradient (``kernels.py`` says what else agrees, and how closely).

Two more optimizers serve the n-gram model (``npembed train --ngrams``), neither a Keras one:
:class:`SGD`, fastText's plain SGD with its linearly decaying rate, and :class:`RowwiseAdagrad`,
Adagrad with one accumulator per embedding row; both can take one step per review, in order,
as fastText does (``npembed/per_review.py``).
"""
from __future__ import annotations

from typing import Protocol, Sequence, Union

import numpy as np

from npembed import kernels
from npembed.sparse import PooledSlices


def adam_update(weight: np.ndarray, m: np.ndarray, v: np.ndarray, grad: np.ndarray,
                squared: np.ndarray, alpha, one_minus_beta_1, one_minus_beta_2, epsilon) -> None:
    """One Adam step in place, as plain NumPy: the reference every fast kernel is held to.

    weight, m, v, grad, squared: arrays of one shape; ``squared`` is S, the second moment's input
    (``grad**2``, or Keras 3's sum of squared slices).  alpha: the step size of
    :meth:`Adam.step_size`.  The other scalars are in the weight's dtype.
    """
    m += (grad - m) * one_minus_beta_1
    v += (squared - v) * one_minus_beta_2
    weight -= m * alpha / (np.sqrt(v) + epsilon)


class SparseRowGradient(Protocol):
    """What the optimizer needs from a sparse gradient (``IndexedSlices`` and ``PooledSlices``
    provide it): the distinct rows, the sum of their slices and the sum of their squared slices."""

    def row_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


Gradient = Union[np.ndarray, SparseRowGradient]


def check_decay_steps(name: str, decay_steps) -> None:
    """ValueError unless ``decay_steps`` is None or an integer >= 1."""
    if decay_steps is not None and (isinstance(decay_steps, (bool, np.bool_))
                                    or not isinstance(decay_steps, (int, float, np.integer, np.floating))
                                    or int(decay_steps) != decay_steps or decay_steps < 1):
        raise ValueError(f"{name} decay_steps must be an integer >= 1 or None, got {decay_steps!r}")


def linearly_decayed(learning_rate: float, iterations: int, decay_steps: int | None) -> float:
    """fastText's schedule: ``learning_rate * max(0, 1 - iterations / decay_steps)``, or the
    rate itself when decay_steps is None."""
    if decay_steps is None:
        return learning_rate
    return learning_rate * max(0.0, 1.0 - iterations / decay_steps)


def check_learning_rate(rate) -> None:
    """ValueError unless ``rate`` is a number > 0 that stays finite and non-zero in float32 (the
    weights' dtype): 1e39 would become inf there and 1e-46 zero, a run that diverges at its
    first step or never moves."""
    with np.errstate(over="ignore", under="ignore"):
        single = np.float32(rate)
    if not (np.isfinite(single) and single > 0):
        raise ValueError(f"learning rate {rate!r} is {float(single)!r} in float32, the weights' dtype: "
                         f"use a value between {np.finfo(np.float32).tiny:.3g} and "
                         f"{np.finfo(np.float32).max:.3g}")


class Adam:
    """``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, variant="keras2")``.

    ``momentums`` and ``velocities`` hold m and v per weight, in the weights' order;
    ``iterations`` counts the steps taken.  See the module docstring for the variants.
    """

    VARIANTS = ("keras2", "keras3", "lazy")
    ALIASES = {"textbook": "keras2", "keras": "keras3"}

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, variant: str = "keras2"):
        variant = self.ALIASES.get(variant, variant) if isinstance(variant, str) else variant
        if variant not in self.VARIANTS:
            raise ValueError(f"Adam variant must be one of {self.VARIANTS}, got {variant!r}")
        for name, value, low, high in (("learning_rate", learning_rate, 0, np.inf),
                                       ("beta_1", beta_1, 0, 1), ("beta_2", beta_2, 0, 1),
                                       ("epsilon", epsilon, 0, np.inf)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"Adam {name} must be a number, got {value!r}")
            if not (low < value < high) and not (name.startswith("beta") and value == 0):
                raise ValueError(f"Adam {name} must be in ({low}, {high}), got {value!r}")
        check_learning_rate(learning_rate)
        self.learning_rate = float(learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.variant = variant
        self.iterations = 0
        self.momentums: list[np.ndarray] = []
        self.velocities: list[np.ndarray] = []
        self._scratch: list[tuple[np.ndarray, np.ndarray] | None] = []

    def build(self, weights: Sequence[np.ndarray]) -> None:
        """Zero first and second moments shaped like each weight."""
        self.momentums = [np.zeros_like(w) for w in weights]
        self.velocities = [np.zeros_like(w) for w in weights]
        self._scratch = [None] * len(weights)

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
        (``IndexedSlices``, ``PooledSlices``) for an embedding table.
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

    def _update(self, index: int, weight: np.ndarray, grad: Gradient, *constants) -> None:
        """:func:`adam_update` through the fast kernels, with this variant's S."""
        m, v = self.momentums[index], self.velocities[index]
        if isinstance(grad, np.ndarray):
            kernels.adam_update(weight, m, v, grad, None, *constants)       # S = grad**2
            return
        if self.variant == "lazy" and isinstance(grad, PooledSlices) and grad.mask is not None:
            kernels.pooled_lazy_adam(weight, m, v, grad.ids, grad.mask, grad.row_gradient, *constants,
                                     memo=grad._memo)               # no per-review distinct rows
            return
        rows, grad_rows, squared_rows = grad.row_sums()
        grad_rows = grad_rows.astype(weight.dtype, copy=False)
        if self.variant == "keras3":
            squared_rows = squared_rows.astype(weight.dtype, copy=False)
        else:
            squared_rows = np.square(grad_rows)
        if self.variant == "lazy":
            kernels.adam_update_lazy_rows(weight, m, v, rows, grad_rows, squared_rows, *constants)
            return
        if self._scratch[index] is None and not kernels.uses_native(weight):
            self._scratch[index] = (np.empty_like(weight), np.empty_like(weight))
        kernels.adam_update_rows(weight, m, v, rows, grad_rows, squared_rows, *constants,
                                 self._scratch[index])

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


class SGD:
    """``SGD(learning_rate=0.5, decay_steps=None, per_review=False)``: plain SGD with fastText's linear decay.

    fastText (``src/fasttext.cc``, ``FastText::trainThread``) trains with no moments at all:
    ``lr_t = lr * (1 - progress)``, progress going from 0 to 1 over the whole run, and
    ``w -= lr_t * g`` on the rows a review touched.  Here, at step ``t = iterations`` (from 0)::

        lr_t = learning_rate * max(0, 1 - t / decay_steps)     (decay_steps None: constant)
        w   -= lr_t * g

    for every weight; for the pooled embedding (``sparse.PooledSlices``) ``g`` is never formed:
    ``kernels.sgd_pooled_rows`` subtracts ``lr_t * g[b]`` at each looked-up position, which is
    ``lr_t * dE`` summed (docs/gradients_appendix.md, section 5).  No state but the step count, so a
    run keeps no m and v (two tables of the embedding's size less than Adam).

    The gradient is the batch mean's (the loss is a mean over B reviews), so a rate ``lr`` at
    batch B moves a row of one review as far as fastText's per-review rate ``lr / B``.
    ``per_review=True`` is fastText's own order instead: ``Sequential.train_step`` then takes one
    step per review of the batch, in order, at the batch's rate (``npembed/per_review.py``).
    """

    def __init__(self, learning_rate: float = 0.5, decay_steps: int | None = None, per_review: bool = False):
        if isinstance(learning_rate, (bool, np.bool_)) or not isinstance(learning_rate, (int, float, np.integer, np.floating)):
            raise TypeError(f"SGD learning_rate must be a number, got {learning_rate!r}")
        check_learning_rate(learning_rate)
        check_decay_steps("SGD", decay_steps)
        self.learning_rate = float(learning_rate)
        self.decay_steps = None if decay_steps is None else int(decay_steps)
        self.per_review = bool(per_review)
        self.iterations = 0
        self.momentums: list[np.ndarray] = []         # none: the checkpoint stores no moments
        self.velocities: list[np.ndarray] = []

    def current_rate(self) -> float:
        """``lr_t`` for the coming step (module docstring of this class)."""
        return linearly_decayed(self.learning_rate, self.iterations, self.decay_steps)

    def apply_gradients(self, grads: Sequence[Gradient], weights: Sequence[np.ndarray]) -> None:
        """``w -= lr_t * g`` in place for every weight, then count the step."""
        if len(grads) != len(weights):
            raise ValueError(f"got {len(grads)} gradients for {len(weights)} weights")
        rate = self.current_rate()
        for weight, grad in zip(weights, grads):
            lr = weight.dtype.type(rate)
            if isinstance(grad, np.ndarray):
                weight -= lr * grad.astype(weight.dtype, copy=False)
            elif hasattr(grad, "row_gradient"):           # PooledSlices: straight from the ids
                kernels.sgd_pooled_rows(weight, grad.ids, grad.mask, grad.row_gradient, lr)
            else:                                         # IndexedSlices: subtract each slice
                np.subtract.at(weight, grad.indices, lr * grad.values.astype(weight.dtype, copy=False))
        self.iterations += 1

    def get_state(self) -> dict:
        return {"iterations": self.iterations, "momentums": [], "velocities": []}

    def set_state(self, state: dict) -> None:
        self.iterations = int(state["iterations"])


class RowwiseAdagrad:
    """``RowwiseAdagrad(learning_rate=0.1, epsilon=1e-8, decay_steps=None)``: Adagrad with one
    accumulator per embedding row, one step per review, for the n-gram model.

    Adagrad (Duchi, Hazan & Singer 2011) divides each step by the root of the summed squares of
    the gradients seen so far, so a rarely seen n-gram takes large steps and a subword seen in
    every review small ones.  Row-wise Adagrad (Gupta et al. 2014; the optimizer of large
    embedding tables in recommendation models, FBGEMM's ``EXACT_ROWWISE_ADAGRAD``) keeps one
    accumulator per embedding row, the mean over its D entries, instead of one per entry: the
    state is a (V,) vector beside the (V, D) table (4 bytes a row where Adam keeps 2 D floats).
    At step ``t = iterations`` (one batch), with ``lr_t`` decayed as :class:`SGD`'s, for each
    review b of the batch in order, its gradients g (docs/gradients_appendix.md sections 5 and 6)::

        embedding row r:      A_r += mean_j g_rj**2     E[r] -= lr_t * g_r / (sqrt(A_r) + epsilon)
        Dense kernel, bias:   A   += g**2 (per entry)   w    -= lr_t * g   / (sqrt(A)   + epsilon)

    only the rows the review holds move (their A included); A starts at 0, so each row's first
    step has length ``lr_t * sqrt(D)``, whatever the gradient's scale.  ``npembed/per_review.py``
    runs it (``review_adagrad_reference``; the native kernel ``native.review_adagrad``).
    ``accumulators`` holds A per weight, in the weights' order: (V,) for the embedding table,
    the weight's own shape for the others.

    ``row_rates`` (V,), optional and fixed: row r's step is multiplied by ``row_rates[r]``
    (``E[r] -= lr_t * row_rates[r] * g_r / (sqrt(A_r) + epsilon)``).  ``npembed train
    --nb-rates`` sets them to |r_f|, the naive-Bayes log-count ratios of the training reviews
    (``nb_init.log_count_ratio``): a row's evidence for one class decides how fast it learns,
    the prior NBSVM puts in its features (docs/gradients_appendix.md section 7).
    """

    per_review = True

    def __init__(self, learning_rate: float = 0.1, epsilon: float = 1e-8, decay_steps: int | None = None,
                 row_rates: np.ndarray | None = None):
        for name, value in (("learning_rate", learning_rate), ("epsilon", epsilon)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"RowwiseAdagrad {name} must be a number, got {value!r}")
        check_learning_rate(learning_rate)
        with np.errstate(over="ignore", under="ignore"):
            single = np.float32(epsilon)
        if not (0 < epsilon < np.inf and 0 < single < np.inf):  # 0 in float32: 0/0 for a zero gradient
            raise ValueError(f"RowwiseAdagrad epsilon must be > 0 and finite in float32, got {epsilon!r}")
        check_decay_steps("RowwiseAdagrad", decay_steps)
        self.learning_rate = float(learning_rate)
        self.epsilon = float(epsilon)
        self.decay_steps = None if decay_steps is None else int(decay_steps)
        self.iterations = 0
        self.accumulators: list[np.ndarray] = []
        self.row_rates = None
        if row_rates is not None:
            self.row_rates = np.asarray(row_rates)
            if self.row_rates.ndim != 1 or not np.all(np.isfinite(self.row_rates)) or np.any(self.row_rates < 0):
                raise ValueError("RowwiseAdagrad row_rates must be a (V,) array of finite values >= 0")
        self.momentums: list[np.ndarray] = []         # Adam's; none here
        self.velocities: list[np.ndarray] = []

    def current_rate(self) -> float:
        """``lr_t`` for the coming step."""
        return linearly_decayed(self.learning_rate, self.iterations, self.decay_steps)

    @staticmethod
    def accumulator_shapes(weights: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
        """(V,) for the embedding table (the first weight), each other weight's own shape."""
        return [(w.shape[0],) if i == 0 else w.shape for i, w in enumerate(weights)]

    def build(self, weights: Sequence[np.ndarray]) -> None:
        """Zero accumulators (``accumulator_shapes``), in each weight's dtype; row_rates, if
        given, in the table's."""
        self.accumulators = [np.zeros(shape, dtype=w.dtype)
                             for shape, w in zip(self.accumulator_shapes(weights), weights)]
        if self.row_rates is not None:
            self.row_rates = np.ascontiguousarray(self.row_rates, dtype=weights[0].dtype)

    def check_accumulators(self, weights: Sequence[np.ndarray]) -> None:
        """ValueError unless the accumulators are C-contiguous, in their weights' dtypes, shaped
        as ``accumulator_shapes(weights)``: the native kernel reads them as raw memory."""
        shapes = self.accumulator_shapes(weights)
        ok = len(self.accumulators) == len(weights) and all(
            a.shape == shape and a.dtype == w.dtype and a.flags.c_contiguous
            for a, shape, w in zip(self.accumulators, shapes, weights))
        rates = self.row_rates
        ok = ok and (rates is None or (rates.shape == shapes[0] and rates.dtype == weights[0].dtype
                                       and rates.flags.c_contiguous))
        if not ok:
            found = [(a.shape, str(a.dtype)) for a in self.accumulators]
            if rates is not None:
                found.append(("row_rates", rates.shape, str(rates.dtype)))
            raise ValueError(f"RowwiseAdagrad accumulators {found} do not fit the weights: they must "
                             f"be {[(shape, str(w.dtype)) for shape, w in zip(shapes, weights)]}")

    def get_state(self) -> dict:
        return {"iterations": self.iterations, "momentums": [], "velocities": [],
                "accumulators": [a.copy() for a in self.accumulators]}

    def set_state(self, state: dict) -> None:
        self.iterations = int(state["iterations"])
        self.accumulators = [np.array(a) for a in state["accumulators"]]
