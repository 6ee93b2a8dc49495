"""Rigorous per-entry error bounds for the tutorial model's float computations.

The parity suite compares two float computations of the same function on the same inputs:
npembed's and Keras's.  Neither is exact, and they round differently (summation order, FMA,
oneDNN's blocking, which kernel backend).  A tolerance tuned on one machine fails on another.
So every float32 comparison here uses a *bound*: for each entry, a number B such that any
implementation that rounds each operation to nearest (any summation order) lies within B of the
exact value.  Then ``|npembed - keras| <= 2 B`` must hold on every machine, and a failure means
one side computed something else.

The rules (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.; u is the unit
roundoff, 2**-24 in float32, 2**-53 in float64, and ``gamma(n) = n u / (1 - n u)``):

- a sum of n terms, in any order:      ``|fl(sum) - sum| <= gamma(n - 1) * sum |terms|``  (Lemma 3.1,
  eq. 4.4); a dot product of length n: ``gamma(n) * sum |x_i y_i|`` (eq. 3.5); a matrix product
  entry likewise.  An FMA only removes roundings.
- inputs carry errors of their own: ``|x' y' - x y| <= (|x| + E_x) E_y + E_x |y|``, so a product
  of bounded inputs adds those terms (first order and second order both kept: the bound is
  rigorous, not asymptotic).
- a function whose slope is at most K on [x - E_x, x + E_x] passes on ``K * E_x`` (ReLU: 1;
  the cross-entropy in z: |sigmoid(z) - y| there; sigmoid: min(1/4, exp(-(|z| - E)))), plus its
  own rounding.  The local slopes keep the bounds relative for confident predictions, where
  the gradient is tiny and a cancelling formula would lose every digit.
- a correctly rounded operation (+ - * / sqrt) adds u of its result; exp, log1p and pow are not
  correctly rounded in libm or Eigen: npembed allows ``TRANSCENDENTAL_ULPS`` ulps for each.

The bounds are computed from a float64 evaluation of the same model (magnitudes only: |x| + E_x
is used wherever a magnitude enters, so the float64 rounding of the reference cannot make a
bound too small by more than a relative 1e-15).  A ReLU unit whose pre-activation lies within
its own error bound of 0 is *at a kink*: either side may take either derivative (0 or 1), so
the bound of the gradient flowing through that unit grows by the whole upstream value there
(rigorous, and wide only where the kink is); such units are listed in
:attr:`ModelBounds.kinks`.

Denormals: TensorFlow flushes them to zero on CPU and NumPy does not; every bound gets
``DENORMAL_SLACK`` times the number of operations, far below any value compared.
"""
from __future__ import annotations

import dataclasses

import numpy as np

TRANSCENDENTAL_ULPS = 4       # exp, log1p, pow: within 4 ulps (glibc's and Eigen's are within 2)
DENORMAL_SLACK = {np.dtype(np.float32): 2.0 ** -126, np.dtype(np.float64): 2.0 ** -1022}


def unit_roundoff(dtype) -> float:
    """u: half the distance from 1 to the next float (2**-24 for float32, 2**-53 for float64)."""
    return float(np.finfo(dtype).eps) / 2


def gamma(n, u: float):
    """``n u / (1 - n u)``, the bound factor for n successive roundings (Higham, Lemma 3.1)."""
    n = np.asarray(n, dtype=np.float64)
    return n * u / (1 - n * u)


@dataclasses.dataclass
class Bounded:
    """A value (float64 reference) and a bound on |float result - exact| for each entry."""

    value: np.ndarray
    error: np.ndarray

    @property
    def magnitude(self) -> np.ndarray:
        """An upper bound on |float result| and on |exact|: ``|value| + error``."""
        return np.abs(self.value) + self.error


def exact(value) -> Bounded:
    value = np.asarray(value, dtype=np.float64)
    return Bounded(value, np.zeros_like(value))


def matmul(a: Bounded, b: Bounded, u: float) -> Bounded:
    """``a @ b`` with inputs' errors and the dot products' rounding (length n = a.shape[-1]):
    ``(|a| + E_a) E_b + E_a |b| + gamma(n) (|a| + E_a)(|b| + E_b)``."""
    n = a.value.shape[-1]
    error = (a.magnitude @ b.error + a.error @ np.abs(b.value)
             + gamma(n, u) * (a.magnitude @ b.magnitude))
    return Bounded(a.value @ b.value, error)


def add_bias(x: Bounded, bias: Bounded, u: float) -> Bounded:
    """``x + bias``: the errors add, and one rounding of the result."""
    value = x.value + bias.value
    error = x.error + bias.error + u * (x.magnitude + bias.magnitude)
    return Bounded(value, error)


def column_sums(x: Bounded, u: float) -> Bounded:
    """Sums over axis 0 (a bias gradient): ``sum E + gamma(n - 1) sum |x|``."""
    n = x.value.shape[0]
    return Bounded(x.value.sum(axis=0), x.error.sum(axis=0) + gamma(n - 1, u) * x.magnitude.sum(axis=0))


@dataclasses.dataclass
class ModelBounds:
    """Bounds for one batch through ``Embedding -> GlobalAveragePooling1D -> Dense... -> Dense(1)``.

    outputs:   layer name -> Bounded output, chained (each layer's input carries its error)
    loss:      Bounded scalar, the mean cross-entropy
    logits_grad: Bounded (B, 1), dL/dz
    grads:     Bounded dense gradients in get_weights() order (the embedding's scatter-summed)
    slices:    Bounded (B*L, D) embedding slices, in IndexedSlices order
    squared:   Bounded (V, D) sum over each row's slices of slice**2 (Keras 3's S)
    kinks:     (layer name, batch index, unit) of ReLU units within their error bound of 0, whose
               derivative either side may take as 0 or 1
    """

    outputs: dict
    loss: Bounded
    logits_grad: Bounded
    grads: list
    slices: Bounded
    squared: Bounded
    kinks: list


def model_bounds(np_model, ids: np.ndarray, labels: np.ndarray, dtype) -> ModelBounds:
    """Forward and backward bounds for np_model's architecture and weights, computed as if in
    ``dtype`` (its unit roundoff), for the batch (ids (B, L), labels (B,))."""
    from npembed.layers import Dense, Embedding, GlobalAveragePooling1D

    u = unit_roundoff(dtype)
    slack = DENORMAL_SLACK[np.dtype(dtype)]
    transcendental = TRANSCENDENTAL_ULPS * 2 * u                       # ulps of a value near 1
    embedding, pooling, *dense_layers = np_model.layers
    assert isinstance(embedding, Embedding) and isinstance(pooling, GlobalAveragePooling1D)
    assert all(isinstance(layer, Dense) for layer in dense_layers)
    table = np.asarray(embedding.params["embeddings"], dtype=np.float64)
    batch, length = ids.shape
    weights = ((ids != 0) if embedding.mask_zero else np.ones(ids.shape, bool)).astype(np.float64)
    counts = weights.sum(axis=1)                                       # n_b: L, or the real tokens

    # ---- forward
    outputs, kinks = {}, []
    embedded = table[ids]                                              # a gather: exact
    outputs[embedding.name] = exact(embedded)
    terms = weights[:, :, None] * np.abs(embedded)
    # a sum over L positions (masked: the n_b real ones; the masked-out terms are exact zeros,
    # whose additions are exact), then one division
    summed = counts if embedding.mask_zero else np.full(batch, float(length))
    pooled = Bounded(np.einsum("bt,btd->bd", weights, embedded) / counts[:, None],
                     gamma(summed + 1, u)[:, None] * terms.sum(axis=1) / counts[:, None])
    outputs[pooling.name] = pooled
    x, pre_activations = pooled, []
    for layer in dense_layers:
        kernel, bias = (exact(layer.params[key]) for key in ("kernel", "bias"))
        h = add_bias(matmul(x, kernel, u), bias, u)
        pre_activations.append(h)
        if layer.activation == "relu":
            for b, unit in zip(*np.nonzero(np.abs(h.value) <= h.error)):
                kinks.append((layer.name, int(b), int(unit)))
            x = Bounded(np.maximum(h.value, 0), h.error)               # 1-Lipschitz
        else:
            x = h
        outputs[layer.name] = x
    z = x                                                              # (B, 1) logits

    # ---- loss: l = max(z, 0) - z y + log1p(exp(-|z|)), whose slope dl/dz = sigmoid(z) - y is at
    # most sigmoid(z + E) in size for y = 0 and sigmoid(-(z - E)) for y = 1 on [z - E, z + E]:
    # tiny for a confident right answer, so the bound stays relative there
    zv, y = z.value[:, 0], np.asarray(labels, dtype=np.float64).reshape(-1)
    z_error = z.error[:, 0]
    loss_slope = np.where(y == 1, _sigmoid(-(zv - z_error)), _sigmoid(zv + z_error))
    softplus = np.log1p(np.exp(-np.abs(zv)))
    per_example = np.maximum(zv, 0) - zv * y + softplus
    per_example_error = (loss_slope * z_error + 3 * u * (2 * np.abs(zv) + np.abs(per_example))
                         + 2 * transcendental * softplus)
    loss = Bounded(np.array(per_example.mean()),
                   np.array(per_example_error.mean() + gamma(batch + 1, u) * np.abs(per_example).mean()))

    # ---- backward.  dL/dz = ((1 - y) sigmoid(z) - y sigmoid(-z)) / B.  sigmoid's slope
    # sigmoid(x) sigmoid(-x) is at most 1/4 and at most exp(-|x|), so on [z - E, z + E] at most
    # min(1/4, exp(-(|z| - E))); its own evaluation (exp, add, divide, the 1/B) stays within a
    # relative TRANSCENDENTAL_ULPS + 3 ulps (tests/test_losses.py checks npembed's to 4 ulps;
    # TensorFlow's measured within 2).
    # (the reference in its stable form too: in float64, sigmoid(40) - 1 is exactly 0)
    dz = (((1 - y) * _sigmoid(zv) - y * _sigmoid(-zv)) / batch)[:, None]
    slope = np.minimum(0.25, np.exp(-np.maximum(np.abs(zv) - z_error, 0)))[:, None]
    dz_error = slope * z.error / batch + (transcendental + 6 * u) * np.abs(dz)
    upstream = Bounded(dz, dz_error)
    logits_grad = upstream
    grads_reversed = []
    for layer, h, layer_input in zip(reversed(dense_layers), reversed(pre_activations),
                                     reversed([pooled] + [outputs[l.name] for l in dense_layers[:-1]])):
        if layer.activation == "relu":
            # ReLU's derivative is 1 above 0 and 0 below; at a kink (|h| within its bound of 0)
            # either side may take either, so the entry's error covers the whole upstream value
            on = (h.value > 0).astype(np.float64)
            at_kink = (np.abs(h.value) <= h.error).astype(np.float64)
            upstream = Bounded(upstream.value * on,
                               upstream.error * np.maximum(on, at_kink) + at_kink * upstream.magnitude)
        transposed = Bounded(layer_input.value.T, layer_input.error.T)
        grads_reversed.append(column_sums(upstream, u))                            # bias
        grads_reversed.append(matmul(transposed, upstream, u))                     # kernel
        kernel_t = exact(layer.params["kernel"].T)
        upstream = matmul(upstream, kernel_t, u)                                   # d(input)
    dpooled = upstream
    # every slice of review b is dpooled[b] / n_b (masked positions: 0): one division
    row_gradient = Bounded(dpooled.value / counts[:, None],
                           dpooled.error / counts[:, None] + u * dpooled.magnitude / counts[:, None])
    flat_weights = weights.reshape(-1, 1)
    slice_values = np.repeat(row_gradient.value, length, axis=0) * flat_weights
    slice_errors = np.repeat(row_gradient.error, length, axis=0) * flat_weights
    slices = Bounded(slice_values, slice_errors)
    rows, num_rows = ids.reshape(-1), table.shape[0]
    per_row = np.bincount(rows, minlength=num_rows)[:, None]

    def scatter(values):
        out = np.zeros((num_rows, values.shape[1]))
        np.add.at(out, rows, values)
        return out

    summing = gamma(np.maximum(per_row - 1, 0), u)
    table_grad = Bounded(scatter(slices.value), scatter(slices.error) + summing * scatter(slices.magnitude))
    squares_error = slices.error * (2 * np.abs(slices.value) + slices.error) + u * slices.magnitude ** 2
    squared = Bounded(scatter(slices.value ** 2),
                      scatter(squares_error) + summing * scatter(slices.magnitude ** 2))
    grads = [table_grad] + grads_reversed[::-1]
    for bounded in [*outputs.values(), loss, logits_grad, *grads, slices, squared]:
        bounded.error = bounded.error + slack * (length + 64)
    return ModelBounds(outputs, loss, logits_grad, grads, slices, squared, kinks)


def _sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


def square(g: Bounded, u: float) -> Bounded:
    """``g**2`` (Keras 2's S of a summed gradient): ``(2|g| + E) E + u (|g| + E)**2``."""
    return Bounded(g.value ** 2, g.error * (2 * np.abs(g.value) + g.error) + u * g.magnitude ** 2)


@dataclasses.dataclass
class AdamBounds:
    weight: Bounded
    m: Bounded
    v: Bounded


def adam_step_bounds(weight, m, v, grad: Bounded, squared: Bounded, step_size: float,
                     one_minus_beta_1: float, one_minus_beta_2: float, epsilon: float,
                     beta_1_power: float, beta_2_power: float, dtype) -> AdamBounds:
    """Bounds after one Adam step from a state (weight, m, v) both sides share exactly, with a
    bounded gradient and second-moment input S::

        m' = m + (g - m) c1          (tf_keras's sparse form m - m c1 + g c1: the same bound)
        v' = v + (S - v) c2
        w' = w - alpha m' / (sqrt(v') + eps)

    alpha = lr sqrt(1 - beta_2**t) / (1 - beta_1**t) is computed by each side with its own pow:
    each power is within TRANSCENDENTAL_ULPS ulps, and ``1 - beta**t`` turns that into a relative
    error of ``ulps * u / (1 - beta**t)`` (large at t = 1: 1 - 0.999 = 0.001).
    """
    u = unit_roundoff(dtype)
    slack = DENORMAL_SLACK[np.dtype(dtype)]
    w, m, v = (np.asarray(a, dtype=np.float64) for a in (weight, m, v))
    c1, c2, eps = one_minus_beta_1, one_minus_beta_2, epsilon
    new_m = Bounded(m + (grad.value - m) * c1,
                    c1 * grad.error + gamma(3, u) * (np.abs(m) * (1 + c1) + c1 * grad.magnitude) + slack)
    new_v = Bounded(v + (squared.value - v) * c2,
                    c2 * squared.error + gamma(3, u) * (v * (1 + c2) + c2 * squared.magnitude) + slack)
    power_error = TRANSCENDENTAL_ULPS * 2 * u
    alpha_relative = (0.5 * (power_error + u) / (1 - beta_2_power) + (power_error + u) / (1 - beta_1_power)
                      + 4 * u)
    alpha = step_size
    # denominator d = sqrt(v') + eps and its error: |sqrt(a) - sqrt(b)| <= min(|a - b| / (sqrt a + sqrt b),
    # sqrt|a - b|), then the sqrt's and the addition's roundings
    low = np.maximum(new_v.value - new_v.error, 0)
    high = new_v.value + new_v.error
    spread = np.sqrt(low) + np.sqrt(high)
    with np.errstate(divide="ignore", invalid="ignore"):
        sqrt_error = np.where(spread > 0, new_v.error / spread, 0.0)
    sqrt_error = np.minimum(sqrt_error, np.sqrt(new_v.error))
    denominator = np.sqrt(np.maximum(new_v.value, 0)) + eps
    denominator_error = sqrt_error + 2 * u * (np.sqrt(high) + eps)
    # either side's denominator is at least eps (a square root is >= 0), rounded once
    denominator_low = np.maximum(denominator - denominator_error, eps * (1 - 2 * u))
    numerator = alpha * new_m.value
    numerator_error = alpha * (new_m.error + alpha_relative * new_m.magnitude) + u * alpha * new_m.magnitude
    step = numerator / denominator
    # |a/b - a'/b'| <= |a - a'| / b' + |a| |b - b'| / (b b'), with b' >= denominator_low; then the
    # division's rounding
    step_error = (numerator_error / denominator_low
                  + np.abs(numerator) * denominator_error / (denominator * denominator_low)
                  + u * (np.abs(step) + numerator_error / denominator_low))
    new_w = w - step
    weight_error = step_error + u * (np.abs(new_w) + step_error) + slack
    return AdamBounds(Bounded(new_w, weight_error), new_m, new_v)


def assert_within(actual, expected, bound, what: str) -> None:
    """``|actual - expected| <= 2 * bound`` entry by entry (each side within ``bound`` of the
    exact value), with the worst entry in the message."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), actual.shape)
    difference = np.abs(actual - expected)
    excess = difference - 2 * bound
    if np.all(excess <= 0):
        return
    worst = np.unravel_index(int(np.argmax(excess)), actual.shape) if actual.ndim else ()
    raise AssertionError(
        f"{what}: {int(np.sum(excess > 0))} of {actual.size} entries outside the error bound; worst at "
        f"{tuple(int(i) for i in worst)}: {actual[worst]!r} vs {expected[worst]!r}, |difference| "
        f"{difference[worst]:.3e} > 2 * bound {2 * bound[worst]:.3e}")
