"""Adam, as each Keras applies it to this model: the tutorial's Keras 2, today's Keras 3, and lazy.

The update, per weight w with gradient dw, at step ``t = iterations + 1`` (Kingma & Ba's
algorithm with the bias corrections folded into the step size, as both Kerases write it)::

    alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
    m    += (dw - m) * (1 - beta_1)
    v    += (S - v) * (1 - beta_2)
    w    -= m * alpha / (sqrt(v) + epsilon)

``S = dw**2`` for a dense gradient.  The Kerases part ways on the embedding, whose gradient
TensorFlow delivers as ``IndexedSlices``: one slice per looked-up position, padding included.
For a row r looked up q times, with slices s_1 .. s_q and summed gradient dE[r] = s_1 + ... + s_q
(docs/gradients.md's symbols):

- ``"keras2"`` (the default): ``S[r] = dE[r]**2``.  TF 2.1's ``tf.keras`` (the Keras the tutorial
  was run and printed with; today ``tf_keras``) sums duplicate slices before the update
  (``OptimizerV2._resource_apply_sparse_duplicate_indices`` calls ``_deduplicate_indexed_slices``
  in ``tensorflow/python/keras/optimizer_v2/optimizer_v2.py``, then Adam's
  ``_resource_apply_sparse``), so every row's second moment is the square of its summed
  gradient: dense textbook Adam.
- ``"keras3"``: ``S[r] = s_1**2 + ... + s_q**2``.  Keras 3 on TensorFlow (``keras/src/optimizers/adam.py``)
  applies ``ops.square`` to the IndexedSlices, squaring each slice, and the following
  subtraction sums them.  Smaller than ``dE[r]**2`` when the slices agree (a subword repeated in
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
reproduces Keras 3.

Constants, matched on purpose (they matter in float64, see docs/parity.md): ``beta_1**t`` and
``beta_2**t`` use beta rounded to float32 (both Kerases ``cast`` a Python float, which goes
through a float32 tensor); the learning rate is a variable of Keras's floatx, which npembed
takes to be the model's dtype; ``1 - beta`` and epsilon are Python doubles converted straight
to the weight's dtype.

The three update lines (m, v, w; alpha comes from :meth:`Adam.step_size`) live once, in
:func:`adam_update`; ``kernels.py`` and ``csrc/adam.c`` hold fast versions that the tests keep
bit for bit equal to it, given the same gradient (``kernels.py`` says what else agrees, and how closely).

Two more optimizers serve the n-gram model (``npembed train --model ngrams``), neither a Keras
one: :class:`SGD`, fastText's plain SGD with its linearly decaying rate, and
:class:`RowwiseAdagrad`, Adagrad with one accumulator per embedding row.  Each takes a batch's
gradient (``apply_gradients``) or, as fastText trains, one step per review of the batch
(``review_steps``, run by ``npembed/per_review.py``).

Every optimizer has the same interface: ``apply_gradients(grads, weights)``; ``iterations``, the
steps taken; ``state()``, a flat dict of numbers and arrays (copies) that ``load_state`` takes
back, checked, and that ``checkpoint.py`` saves as it is; ``check_fits(weights)``, which refuses
state built for weights of other shapes before any kernel reads it.
"""
from __future__ import annotations

from typing import Mapping, Protocol, Sequence, Union

import numpy as np

from npembed import kernels
from npembed.checks import check_number, is_integer, is_number
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
    if decay_steps is not None and (not is_number(decay_steps) or int(decay_steps) != decay_steps
                                    or decay_steps < 1):
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


def _shapes(arrays: Sequence[np.ndarray]) -> list[tuple]:
    return [(tuple(a.shape), str(a.dtype)) for a in arrays]


def check_state_arrays(owner: str, built: Sequence[np.ndarray], wanted: Sequence[tuple]) -> None:
    """ValueError unless the state arrays ``built`` are C-contiguous and have the (shape, dtype)
    pairs ``wanted``: the kernels read them as raw memory at the weights' shapes."""
    fits = len(built) == len(wanted) and all(
        a.shape == tuple(shape) and a.dtype == dtype and a.flags.c_contiguous
        for a, (shape, dtype) in zip(built, wanted))
    if not fits:
        raise ValueError(f"{owner}'s state {_shapes(built)} does not fit the weights, which need "
                         f"{[(tuple(s), str(np.dtype(d))) for s, d in wanted]}: an optimizer keeps "
                         "one model's state; give each model its own optimizer")


def _iterations(owner: str, state: Mapping) -> int:
    steps = state.get("iterations")
    if not is_integer(steps) or steps < 0:
        raise ValueError(f"{owner} state: iterations must be an integer >= 0, got {steps!r}")
    return int(steps)


def _check_same_schedule(owner: str, saved_decay_steps, decay_steps) -> None:
    """ValueError unless a saved linear-decay schedule is this optimizer's: a rate that decayed
    towards 0 over N steps cannot go on as if it had decayed over M."""
    if saved_decay_steps != decay_steps:
        raise ValueError(f"its {owner} rate decays linearly to 0 over {saved_decay_steps} steps, this "
                         f"run's over {decay_steps}: a decaying schedule cannot be stretched without "
                         "giving a different result than a run planned for the new length. Resume "
                         "with the run's own --epochs, or start a new run with the --epochs you want")


def _state_arrays(owner: str, state: Mapping, prefix: str, like: Sequence[tuple], what: str) -> list[np.ndarray]:
    """``state[prefix + str(i)]`` for each (shape, dtype) in ``like``, checked: present, that
    shape and dtype, finite; ValueError naming the key otherwise."""
    arrays = []
    for index, (shape, dtype) in enumerate(like):
        key = f"{prefix}{index}"
        if key not in state:
            raise ValueError(f"{owner} state has no {what} {key!r}")
        value = np.asarray(state[key])
        if value.shape != tuple(shape) or value.dtype != np.dtype(dtype):
            raise ValueError(f"{owner} {what} {key!r} has shape {value.shape} and dtype {value.dtype}, "
                             f"the weights need {tuple(shape)} {np.dtype(dtype)}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{owner} {what} {key!r} holds NaN or infinite values")
        arrays.append(np.array(value, order="C"))
    return arrays


class Adam:
    """``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, variant="keras2")``.

    ``momentums`` and ``velocities`` hold m and v per weight, in the weights' order;
    ``iterations`` counts the steps taken.  See the module docstring for the variants.
    ``state()``: ``{"iterations": t, "m_0": m_0, "v_0": v_0, "m_1": ...}`` (no m, v before the
    first step).
    """

    VARIANTS = ("keras2", "keras3", "lazy")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, variant: str = "keras2"):
        if variant not in self.VARIANTS:
            raise ValueError(f"Adam variant must be one of {self.VARIANTS}, got {variant!r}")
        for name, value, low, high in (("learning_rate", learning_rate, 0, np.inf),
                                       ("beta_1", beta_1, 0, 1), ("beta_2", beta_2, 0, 1),
                                       ("epsilon", epsilon, 0, np.inf)):
            check_number(f"Adam {name}", value)
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

    def check_fits(self, weights: Sequence[np.ndarray]) -> None:
        """ValueError unless m and v (when built) have the weights' shapes and dtypes."""
        if not (self.momentums or self.velocities):
            return
        fits = len(self.momentums) == len(self.velocities) == len(weights) and all(
            m.shape == w.shape == v.shape and m.dtype == w.dtype == v.dtype
            and m.flags.c_contiguous and v.flags.c_contiguous
            for m, v, w in zip(self.momentums, self.velocities, weights))
        if not fits:                      # (every step: kept to a few microseconds)
            wanted = [(w.shape, w.dtype) for w in weights]
            check_state_arrays("Adam", self.momentums, wanted)
            check_state_arrays("Adam", self.velocities, wanted)

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
        self.check_fits(weights)
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

    def state(self) -> dict:
        """Everything needed to resume (copies): the step count, m_i and v_i."""
        state = {"iterations": self.iterations}
        for index, (m, v) in enumerate(zip(self.momentums, self.velocities)):
            state[f"m_{index}"], state[f"v_{index}"] = m.copy(), v.copy()
        return state

    def load_state(self, state: Mapping, weights: Sequence[np.ndarray] | None = None) -> None:
        """Take back :meth:`state`, checked first (shapes and dtypes of ``weights`` when given,
        finite values, v >= 0); ValueError and nothing changed when it does not fit."""
        iterations = _iterations("Adam", state)
        count = sum(key.startswith("m_") for key in state)
        like = ([(w.shape, w.dtype) for w in weights] if weights is not None
                else [(np.shape(state.get(f"m_{i}")), np.asarray(state.get(f"m_{i}")).dtype) for i in range(count)])
        if count == 0 and iterations == 0:
            self.iterations, self.momentums, self.velocities, self._scratch = 0, [], [], []
            return
        momentums = _state_arrays("Adam", state, "m_", like, "first moment")
        velocities = _state_arrays("Adam", state, "v_", like, "second moment")
        if any(np.any(v < 0) for v in velocities):
            raise ValueError("an Adam second moment is negative")
        self.iterations, self.momentums, self.velocities = iterations, momentums, velocities
        self._scratch = [None] * len(momentums)


class SGD:
    """``SGD(learning_rate=0.5, decay_steps=None)``: plain SGD with fastText's linear decay.

    fastText (``src/fasttext.cc``, ``FastText::trainThread``) trains with no moments at all:
    ``lr_t = lr * (1 - progress)``, progress going from 0 to 1 over the whole run, and
    ``w -= lr_t * g`` on the rows a review touched.  Here, at step ``t = iterations`` (from 0)::

        lr_t = learning_rate * max(0, 1 - t / decay_steps)     (decay_steps None: constant)
        w   -= lr_t * g

    for every weight; for the pooled embedding (``sparse.PooledSlices``) ``g`` is never formed:
    ``kernels.sgd_pooled_rows`` subtracts ``lr_t * g[b]`` at each looked-up position, which is
    ``lr_t * dE`` summed (docs/gradients_appendix.md, section 5).  No state but the step count and its
    schedule: ``state()`` is ``{"iterations": t, "decay_steps": decay_steps}``.

    The gradient is the batch mean's (the loss is a mean over B reviews), so a rate ``lr`` at
    batch B moves a row of one review as far as fastText's per-review rate ``lr / B``.
    :meth:`review_steps` is fastText's own order instead: one step per review of the batch, in
    order, at the batch's rate (``npembed/per_review.py`` runs it).
    """

    def __init__(self, learning_rate: float = 0.5, decay_steps: int | None = None):
        check_number("SGD learning_rate", learning_rate)
        check_learning_rate(learning_rate)
        check_decay_steps("SGD", decay_steps)
        self.learning_rate = float(learning_rate)
        self.decay_steps = None if decay_steps is None else int(decay_steps)
        self.iterations = 0

    def current_rate(self) -> float:
        """``lr_t`` for the coming step (module docstring of this class)."""
        return linearly_decayed(self.learning_rate, self.iterations, self.decay_steps)

    def check_fits(self, weights: Sequence[np.ndarray]) -> None:
        """Nothing to check: SGD keeps no per-weight state."""

    def update(self, grads: Sequence[Gradient], weights: Sequence[np.ndarray], rate: float) -> None:
        """``w -= rate * g`` in place for every weight (the step count is not touched)."""
        if len(grads) != len(weights):
            raise ValueError(f"got {len(grads)} gradients for {len(weights)} weights")
        for weight, grad in zip(weights, grads):
            lr = weight.dtype.type(rate)
            if isinstance(grad, np.ndarray):
                weight -= lr * grad.astype(weight.dtype, copy=False)
            elif isinstance(grad, PooledSlices):          # straight from the ids
                kernels.sgd_pooled_rows(weight, grad.ids, grad.mask, grad.row_gradient, lr)
            else:                                         # IndexedSlices: subtract each slice
                np.subtract.at(weight, grad.indices, lr * grad.values.astype(weight.dtype, copy=False))

    def apply_gradients(self, grads: Sequence[Gradient], weights: Sequence[np.ndarray]) -> None:
        """``w -= lr_t * g`` in place for every weight, then count the step."""
        self.update(grads, weights, self.current_rate())
        self.iterations += 1

    def review_steps(self, ids, mask, labels, table, kernel, bias) -> tuple[np.ndarray, np.ndarray]:
        """One step per review of the batch at ``lr_t`` (``kernels.review_sgd``), then count one
        step: (logits (B,), losses (B,)), each review's before its own step."""
        result = kernels.review_sgd(ids, mask, labels, table, kernel, bias, self.current_rate())
        self.iterations += 1
        return result

    def state(self) -> dict:
        """The step count and the schedule it belongs to (``decay_steps``; None: constant)."""
        return {"iterations": self.iterations, "decay_steps": self.decay_steps}

    def load_state(self, state: Mapping, weights: Sequence[np.ndarray] | None = None) -> None:
        """Take back :meth:`state`; ValueError for a state of another schedule: a rate that
        decayed towards 0 over N steps cannot go on as if it had decayed over M."""
        extra = sorted(set(state) - {"iterations", "decay_steps"})
        if extra:
            raise ValueError(f"SGD keeps only its step count and schedule; this state also holds {extra}")
        iterations = _iterations("SGD", state)
        _check_same_schedule("SGD", state.get("decay_steps"), self.decay_steps)
        self.iterations = iterations


class RowwiseAdagrad:
    """``RowwiseAdagrad(learning_rate=0.1, epsilon=1e-8, decay_steps=None)``: Adagrad with one
    accumulator per embedding row, for the n-gram model.

    Adagrad (Duchi, Hazan & Singer 2011) divides each step by the root of the summed squares of
    the gradients seen so far, so a rarely seen n-gram takes large steps and a subword seen in
    every review small ones.  Row-wise Adagrad (Gupta et al. 2014; the optimizer of large
    embedding tables in recommendation models, FBGEMM's ``EXACT_ROWWISE_ADAGRAD``) keeps one
    accumulator per embedding row, the mean over its D entries, instead of one per entry: the
    state is a (V,) vector beside the (V, D) table (4 bytes a row where Adam keeps 2 D floats).
    At step ``t = iterations``, with ``lr_t`` decayed as :class:`SGD`'s, for a gradient g
    (docs/gradients_appendix.md sections 5 and 6)::

        embedding row r:      A_r += mean_j g_rj**2     E[r] -= lr_t * g_r / (sqrt(A_r) + epsilon)
        Dense kernel, bias:   A   += g**2 (per entry)   w    -= lr_t * g   / (sqrt(A)   + epsilon)

    only the rows the gradient holds move (their A included); A starts at 0, so each row's first
    step has length ``lr_t * sqrt(D)``, whatever the gradient's scale.  :meth:`apply_gradients`
    takes one such step on a batch's gradient; :meth:`review_steps`, as fastText trains, one per
    review of the batch (``npembed/per_review.py``; ``kernels.review_adagrad``).
    ``accumulators`` holds A per weight, in the weights' order: (V,) for the embedding table
    (the first weight), the weight's own shape for the others.  ``state()``:
    ``{"iterations": t, "a_0": A_0, "a_1": ...}``.
    """

    def __init__(self, learning_rate: float = 0.1, epsilon: float = 1e-8, decay_steps: int | None = None):
        for name, value in (("learning_rate", learning_rate), ("epsilon", epsilon)):
            check_number(f"RowwiseAdagrad {name}", value)
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

    def current_rate(self) -> float:
        """``lr_t`` for the coming step."""
        return linearly_decayed(self.learning_rate, self.iterations, self.decay_steps)

    @staticmethod
    def accumulator_shapes(weights: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
        """(V,) for the embedding table (the first weight), each other weight's own shape."""
        return [(w.shape[0],) if i == 0 else w.shape for i, w in enumerate(weights)]

    def build(self, weights: Sequence[np.ndarray]) -> None:
        """Zero accumulators (``accumulator_shapes``), in each weight's dtype."""
        self.accumulators = [np.zeros(shape, dtype=w.dtype)
                             for shape, w in zip(self.accumulator_shapes(weights), weights)]

    def check_fits(self, weights: Sequence[np.ndarray]) -> None:
        """ValueError unless the accumulators (when built) are C-contiguous, in their weights'
        dtypes, shaped as ``accumulator_shapes(weights)``: the native kernel reads raw memory."""
        if self.accumulators:
            check_state_arrays("RowwiseAdagrad", self.accumulators,
                               [(shape, w.dtype) for shape, w in zip(self.accumulator_shapes(weights), weights)])

    def _built(self, weights: Sequence[np.ndarray]) -> None:
        if not self.accumulators:
            self.build(weights)
        self.check_fits(weights)

    def update(self, grads: Sequence[Gradient], weights: Sequence[np.ndarray], rate: float) -> None:
        """The class docstring's step at ``rate`` in place (the step count is not touched); the
        embedding's gradient dense (V, D) or sparse (its distinct rows)."""
        if len(grads) != len(weights):
            raise ValueError(f"got {len(grads)} gradients for {len(weights)} weights")
        self._built(weights)
        table, table_acc = weights[0], self.accumulators[0]
        lr, eps = table.dtype.type(rate), table.dtype.type(self.epsilon)
        if isinstance(grads[0], np.ndarray):
            rows, sums = slice(None), grads[0].astype(table.dtype, copy=False)
        else:
            rows, sums, _ = grads[0].row_sums()              # distinct rows, their summed gradient
            held = np.any(sums != 0, axis=1)                # the padding row is listed with 0
            rows, sums = rows[held], sums[held].astype(table.dtype, copy=False)
        table_acc[rows] += np.mean(np.square(sums, dtype=np.float64), axis=1).astype(table.dtype)
        table[rows] -= sums * (lr / (np.sqrt(table_acc[rows]) + eps))[:, None]
        for weight, acc, grad in zip(weights[1:], self.accumulators[1:], grads[1:]):
            grad = grad if isinstance(grad, np.ndarray) else grad.to_dense()
            lr, eps = weight.dtype.type(rate), weight.dtype.type(self.epsilon)
            acc += grad * grad
            weight -= lr * grad / (np.sqrt(acc) + eps)

    def apply_gradients(self, grads: Sequence[Gradient], weights: Sequence[np.ndarray]) -> None:
        """One step on a batch's gradient at ``lr_t``, then count it."""
        self.update(grads, weights, self.current_rate())
        self.iterations += 1

    def review_steps(self, ids, mask, labels, table, kernel, bias) -> tuple[np.ndarray, np.ndarray]:
        """One step per review of the batch at ``lr_t`` (``kernels.review_adagrad``), then count
        one step: (logits (B,), losses (B,)), each review's before its own step."""
        self._built([table, kernel, bias])
        table_acc, kernel_acc, bias_acc = self.accumulators
        result = kernels.review_adagrad(ids, mask, labels, table, table_acc, kernel, kernel_acc, bias,
                                        bias_acc, self.current_rate(), self.epsilon)
        self.iterations += 1
        return result

    def state(self) -> dict:
        """The step count, the schedule it belongs to (``decay_steps``) and the accumulators (copies)."""
        return {"iterations": self.iterations, "decay_steps": self.decay_steps,
                **{f"a_{index}": a.copy() for index, a in enumerate(self.accumulators)}}

    def load_state(self, state: Mapping, weights: Sequence[np.ndarray] | None = None) -> None:
        """Take back :meth:`state`, checked first (``accumulator_shapes(weights)`` when given,
        finite, >= 0); ValueError and nothing changed when it does not fit."""
        iterations = _iterations("RowwiseAdagrad", state)
        _check_same_schedule("RowwiseAdagrad", state.get("decay_steps"), self.decay_steps)
        count = sum(key.startswith("a_") for key in state)
        if count == 0 and iterations == 0:
            self.iterations, self.accumulators = 0, []
            return
        like = ([(shape, w.dtype) for shape, w in zip(self.accumulator_shapes(weights), weights)]
                if weights is not None else
                [(np.shape(state.get(f"a_{i}")), np.asarray(state.get(f"a_{i}")).dtype) for i in range(count)])
        accumulators = _state_arrays("RowwiseAdagrad", state, "a_", like, "Adagrad accumulator")
        if any(np.any(a < 0) for a in accumulators):
            raise ValueError("an Adagrad accumulator is negative")
        self.iterations, self.accumulators = iterations, accumulators

