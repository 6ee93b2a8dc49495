"""Hot paths, each beside the plain reference version that the tests prove it equal to.

A reader who wants the math should read ``layers.py`` and ``optimizers.py``; this module only
makes the same arithmetic cheaper.  Every fast function here names its reference and states
how close the two are.

Two backends run the fast functions:

- ``"native"``: the C kernels of ``npembed/csrc/``, compiled on first use with the machine's C
  compiler (see ``native.py``); the default wherever that works.  They are float32 only;
- ``"numpy"``: whole-array NumPy, always available, and the reference for the other.

``NPEMBED_KERNELS=numpy`` (or ``native``) in the environment, or :func:`set_backend`, chooses.
:func:`uses_native` is the one dispatch point: the native kernels run a float32 array when that
backend is chosen; float64 always runs the NumPy code below.

What is equal, and how closely (tests/test_kernels.py tests exactly this):

- **Bit for bit**: Adam's element-wise update (dense, on table rows, lazy rows): given the same
  gradient and squared gradient, both backends do the same IEEE float32 operations in the same
  order (the C is compiled without fused multiply-add or fast-math), so weights, m and v are
  identical.  The forward's per-review token counts and the distinct rows are identical too.
- **Within a bound**, where a sum is rounded in a different order:
  the pooled forward (both sum in float64, in different orders, and round once to float32):
  within 1 float32 ulp (the float64 sums differ by at most about L 2^-53 sum|terms|, below one
  float32 ulp unless the sum cancels to under L 2^-29 sum|terms|, L the review's length);
  the per-row gradient sums ``sums``/``squares`` of :func:`pooled_row_sums` (native: float64,
  rounded once; NumPy: a float32 matrix product of at most B terms per row):
  ``|native - numpy| <= (B + 1) u * sum_b c_b |g_b|`` with u = 2^-24 (float32's unit roundoff);
  SGD's scatter (native: a row held k times takes k rounded subtractions; NumPy: one of the
  rounded sum): ``|native - numpy| <= 2 (k + 1) u (|w| + sum |steps|)`` per entry.
- So one training step of the two backends differs only where those sums differ, by about an
  ulp of the weight (3.7e-9, one ulp of a weight near 0.05, after the tutorial's first Adam
  step); the differences then grow as any perturbation of training does, and a run resumed
  under the other backend is not bit-identical to one that stayed.  The training curve agrees
  within tests/test_tutorial_curve.py's tolerance, not bit for bit.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from npembed.checks import check_no_empty_rows

BACKENDS = ("native", "numpy")
_backend: str | None = None
_native = None                   # the npembed.native module, once its build has loaded


def backend() -> str:
    """The backend in use: ``NPEMBED_KERNELS`` if set, else "native" where it builds, else
    "numpy" (with a warning that says why)."""
    if _backend is None:
        requested = os.environ.get("NPEMBED_KERNELS", "").strip().lower()
        if requested:
            try:
                set_backend(requested)
            except ImportError as err:
                from npembed.errors import SetupError
                raise SetupError(f"NPEMBED_KERNELS={requested} asks for kernels that cannot be used "
                                 f"here: {_first_lines(err)} Set NPEMBED_KERNELS=numpy, or unset it "
                                 "to fall back on NumPy with a warning") from err
        else:
            try:
                set_backend("native")
            except ImportError as err:
                warnings.warn(f"npembed runs its NumPy kernels, about 2x slower: {err} "
                              "(set NPEMBED_KERNELS=numpy to choose them and silence this)",
                              RuntimeWarning, stacklevel=2)
                set_backend("numpy")
    return _backend


def set_backend(name: str) -> None:
    """Use ``"native"`` or ``"numpy"`` kernels from now on (for every model in the process).
    Raises ImportError when the native kernels cannot be built here."""
    global _backend, _native
    if name not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, got {name!r} "
                         "(from set_backend or the NPEMBED_KERNELS environment variable)")
    if name == "native" and _native is None:
        from npembed import native
        try:
            native.load()
        except native.BuildError as err:
            raise ImportError(f"the native kernels cannot be used here: {err}") from err
        _native = native
    _backend = name


def _first_lines(err: Exception, lines: int = 2) -> str:
    """The start of a long message (a compiler's output), as one line."""
    text = " ".join(str(err).splitlines()[:lines]).strip()
    return text if text.endswith(".") else text + "."


def uses_native(array: np.ndarray) -> bool:
    """Whether the native kernels run an operation on ``array``'s dtype: the "native" backend
    and float32 (the C path's type); float64 always takes the NumPy reference."""
    return array.dtype == np.float32 and (_backend or backend()) == "native"


def check_state_shapes(weight: np.ndarray, *state: np.ndarray) -> None:
    """Refuse optimizer state whose shape is not its weight's (state built for another model):
    the NumPy path would broadcast or fail deep inside, the C path must never see it."""
    for array in state:                           # plain comparisons: this runs every step
        if array.shape != weight.shape:
            raise ValueError(f"optimizer state of shape {array.shape} for a weight of shape {weight.shape}: "
                             "it was built for another model; compile this model with a fresh optimizer")


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


def row_counts(ids: np.ndarray, num_rows: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a (B, L) id batch and how often each review holds each of them.

    Returns ``rows`` (U,) ascending and ``counts`` (B, U) in float (exact small integers);
    positions where ``mask`` is False count 0 (their row still appears in ``rows``, as the
    padding row does in TensorFlow's IndexedSlices).  Reference:
    ``np.unique(ids)`` and ``counts[b, u] = sum_t [ids[b, t] == rows[u]] * mask[b, t]``.
    One bincount over the vocabulary finds the rows and a lookup table maps ids to their slot;
    for a vocabulary much larger than the batch, ``np.unique`` does both without touching V.
    """
    batch = ids.shape[0]
    if num_rows <= 8 * ids.size:
        present = np.bincount(ids.ravel(), minlength=num_rows)
        rows = np.flatnonzero(present > 0)              # (faster on a bool array than on counts)
        slot = np.empty(num_rows, dtype=np.intp)
        slot[rows] = np.arange(rows.size)
        inverse = np.take(slot, ids)
    else:  # a large vocabulary: sort the ids instead of scanning the table (O(tokens), not O(V))
        rows, inverse = np.unique(ids, return_inverse=True)
        inverse = inverse.reshape(ids.shape).astype(np.intp)
    inverse += (np.arange(batch) * rows.size)[:, None]          # flat index b * U + slot
    weights = None if mask is None else mask.ravel().astype(np.float64)
    counts = np.bincount(inverse.ravel(), weights=weights, minlength=batch * rows.size)
    return rows, counts.reshape(batch, rows.size).astype(np.float64, copy=False)


def pooled_lookup(ids: np.ndarray, table: np.ndarray, mask: np.ndarray | None
                  ) -> tuple[np.ndarray, object]:
    """``Embedding`` then ``GlobalAveragePooling1D`` in one step: (pooled (B, D), memo).

    Reference: ``GlobalAveragePooling1D().forward(table[ids], mask)``.  Instead of gathering a
    (B, L, D) array, NumPy computes ``pooled = counts @ table[rows] / L`` (or ``/ n[b]`` with
    the padding positions given count 0): a (B, U) by (U, D) product in float64, rounded once,
    like the layer's float64 accumulation; the C loop adds each review's rows in
    float64.  Either agrees with the reference to within one ulp of the output dtype.
    ``memo`` is what :func:`pooled_row_sums` reuses for the backward pass: the rows and the
    (B, U) count matrix (NumPy), or each review's distinct rows and their counts (native).
    Native with a mask (the n-gram model's long reviews) sums the masked-in rows position by
    position in float64 instead, without finding each review's distinct rows, and returns memo
    None: plain SGD (:func:`sgd_pooled_rows`) never needs them, Adam's backward finds them.
    """
    if uses_native(table) and mask is not None:     # the n-gram model: no distinct rows (memo None)
        pooled, lengths = _native.masked_pooled_lookup(ids, table, mask)
        check_no_empty_rows(lengths)
        return pooled, None
    if uses_native(table):
        pooled, lengths, review_counts = _native.pooled_lookup(ids, table, mask)
        if mask is not None:
            check_no_empty_rows(lengths)
        return pooled, review_counts
    rows, counts = row_counts(ids, table.shape[0], mask)
    if mask is None:
        lengths = float(ids.shape[1])
    else:
        lengths = counts.sum(axis=1, keepdims=True)
        check_no_empty_rows(lengths)
    pooled = counts @ np.take(table, rows, axis=0).astype(np.float64)
    pooled /= lengths
    return pooled.astype(table.dtype), (rows, counts)


def pooled_row_sums(ids: np.ndarray, mask: np.ndarray | None, row_gradient: np.ndarray,
                    num_rows: int, memo=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rows (U,) ascending, sums (U, D), squared sums (U, D) of the pooled embedding's slices.

    Slice (b, t) is ``mask[b, t] * row_gradient[b]`` (no mask: every position).  Reference: the
    ``IndexedSlices`` of ``Embedding.backward`` after ``GlobalAveragePooling1D.backward``, and
    its ``row_sums()``.  NumPy: ``counts.T @ g`` and ``counts.T @ g**2`` with the (B, U) count
    matrix, in the gradient's dtype; native: ``count * g`` per review and row, summed in
    float64 and rounded once.  ``memo`` comes from :func:`pooled_lookup` (recomputed when None).
    The two differ by at most ``(B + 1) u sum_b c_b |g_b|`` (u = 2^-24), the float32 product's
    rounding; the rows are identical.
    """
    if uses_native(row_gradient):
        if memo is None or len(memo) != 3:              # (a memo of the NumPy forward: 2 arrays)
            memo = _native.review_row_counts(ids, mask, num_rows)
        return _native.pooled_row_sums(memo, row_gradient, num_rows)
    rows, counts = memo if memo is not None and len(memo) == 2 else row_counts(ids, num_rows, mask)
    counts = counts.astype(row_gradient.dtype)          # small counts are exact in either dtype
    return rows, counts.T @ row_gradient, counts.T @ np.square(row_gradient)


# --------------------------------------------------------------------------- plain SGD
def sgd_pooled_rows(table: np.ndarray, ids: np.ndarray, mask: np.ndarray | None,
                    row_gradient: np.ndarray, learning_rate) -> None:
    """``table -= learning_rate * dE`` in place, for the pooled embedding's gradient
    ``dE[r] = sum_b c[b, r] g[b]`` (``sparse.PooledSlices``; g = ``row_gradient`` (B, D)).

    Reference: ``table -= learning_rate * PooledSlices(...).to_dense()``.  Native (with a mask):
    ``table[ids[b, t]] -= learning_rate * g[b]`` at every masked-in position, in position order,
    straight from the ids (fastText's ``addVectorToRow`` per token; no distinct rows); NumPy:
    the distinct rows' sums, then one subtraction per row.  A row held k times gets k rounded
    subtractions natively and one of the rounded sum in NumPy: they agree to a few ulps.
    """
    step = (row_gradient * row_gradient.dtype.type(learning_rate)).astype(table.dtype, copy=False)
    if uses_native(table) and mask is not None:
        _native.sgd_scatter(table, ids, mask, step)
        return
    rows, sums, _ = pooled_row_sums(ids, mask, step, table.shape[0])
    table[rows] -= sums


# --------------------------------------------------------------------------- Adam
def adam_update(weight, m, v, grad, squared_grad, alpha, one_minus_beta_1,
                one_minus_beta_2, epsilon) -> None:
    """``optimizers.adam_update`` (S = ``squared_grad``, or ``grad**2`` when None), bit for bit:
    native, one pass; NumPy, the same operations in the same order in two temporaries (a
    scratch array reused for every intermediate, and ``m * alpha``) instead of one per
    operation."""
    check_state_shapes(weight, m, v, grad)
    if squared_grad is None and uses_native(weight):
        _native.adam_dense(weight, m, v, np.ascontiguousarray(grad), alpha, one_minus_beta_1,
                           one_minus_beta_2, epsilon)
        return
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


def adam_update_rows(weight, m, v, rows, grad_rows, squared_rows, alpha, one_minus_beta_1,
                     one_minus_beta_2, epsilon, scratch=None) -> None:
    """``optimizers.adam_update`` for a gradient that is zero outside ``rows`` (ascending,
    distinct), bit for bit.

    Outside ``rows`` Keras's ``m += (0 - m) * c1`` is exactly ``m -= m * c1`` (negation is exact).
    Native: one pass over the table.  NumPy: every row decays in two passes and only the U
    looked-up rows are then redone from their saved old values with the full formula;
    ``scratch`` is a pair of buffers shaped like ``weight`` (allocated when None).
    """
    check_state_shapes(weight, m, v)
    if uses_native(weight):
        _native.adam_rows(weight, m, v, rows, grad_rows, squared_rows, alpha, one_minus_beta_1,
                          one_minus_beta_2, epsilon)
        return
    if scratch is None:
        scratch = (np.empty_like(weight), np.empty_like(weight))
    m_rows, v_rows = np.take(m, rows, axis=0), np.take(v, rows, axis=0)
    decay = scratch[0]
    np.multiply(m, one_minus_beta_1, out=decay)
    m -= decay
    np.multiply(v, one_minus_beta_2, out=decay)
    v -= decay
    m[rows] = m_rows + (grad_rows - m_rows) * one_minus_beta_1
    v[rows] = v_rows + (squared_rows - v_rows) * one_minus_beta_2
    _apply_step(weight, m, v, alpha, epsilon, scratch)


def adam_update_lazy_rows(weight, m, v, rows, grad_rows, squared_rows, alpha, one_minus_beta_1,
                          one_minus_beta_2, epsilon) -> None:
    """The same formula on ``rows`` only; the other rows' m, v and weights stay as they are."""
    check_state_shapes(weight, m, v)
    if uses_native(weight):
        _native.lazy_adam_rows(weight, m, v, rows, grad_rows, squared_rows, alpha, one_minus_beta_1,
                               one_minus_beta_2, epsilon)
        return
    m_rows, v_rows, w_rows = (np.take(state, rows, axis=0) for state in (m, v, weight))
    adam_update(w_rows, m_rows, v_rows, grad_rows, squared_rows, alpha, one_minus_beta_1,
                one_minus_beta_2, epsilon)
    m[rows], v[rows], weight[rows] = m_rows, v_rows, w_rows


def pooled_lazy_adam(weight, m, v, ids, mask, row_gradient, alpha, one_minus_beta_1,
                     one_minus_beta_2, epsilon, memo=None) -> None:
    """Lazy Adam (S = g**2) on the rows of a pooled embedding's gradient (``sparse.PooledSlices``).

    Reference: ``pooled_row_sums`` then :func:`adam_update_lazy_rows` with
    ``squared_rows = grad_rows**2`` (what ``Adam(variant="lazy")`` does with any sparse
    gradient).  Native with a mask (the n-gram model): one walk over the ids sums each row's
    slices in float64 and rounds each sum once, then each row takes its update, with no
    per-review distinct rows and no sort.  Its row sums are within :func:`pooled_row_sums`'s
    bound of NumPy's; given the same sums the update is bit for bit.
    """
    check_state_shapes(weight, m, v)
    if uses_native(weight) and mask is not None:
        _native.pooled_lazy_adam(weight, m, v, ids, mask, row_gradient, alpha, one_minus_beta_1,
                                 one_minus_beta_2, epsilon)
        return
    rows, grad_rows, _ = pooled_row_sums(ids, mask, row_gradient, weight.shape[0], memo)
    grad_rows = grad_rows.astype(weight.dtype, copy=False)
    adam_update_lazy_rows(weight, m, v, rows, grad_rows, np.square(grad_rows), alpha,
                          one_minus_beta_1, one_minus_beta_2, epsilon)


def _apply_step(weight, m, v, alpha, epsilon, scratch) -> None:
    """``weight -= m * alpha / (sqrt(v) + epsilon)`` in two scratch buffers shaped like weight
    (a fresh temporary of the table's size would cost an mmap and its page faults every step)."""
    denominator, step = scratch
    np.sqrt(v, out=denominator)
    denominator += epsilon
    np.multiply(m, alpha, out=step)
    np.divide(step, denominator, out=step)
    weight -= step


# --------------------------------------------------------------------------- one step per review
# The n-gram model ``Embedding(V, D, mask_zero=True) -> average -> Dense(1)`` with sigmoid
# cross-entropy, trained as fastText does: one step per review, in order (npembed/per_review.py).
# Review b, its n masked-in ids id_1 .. id_n, label y, c_r of its positions holding row r
# (docs/gradients_appendix.md, sections 5 and 6, the n-gram model at B = 1, in its symbols):
#
#     pooled = (1/n) sum_i E[id_i]     z = pooled . w_out + b_out     dz = sigmoid(z) - y
#     dw_out = dz pooled     db_out = dz     dE[r] = c_r dz w_out / n   (every row along w_out, the kernel before its step)
#
# In the code below: h is pooled, k the kernel w_out, the bias b_out, e is dz, counts are the c_r.
# ``per_review.reference_steps`` is the definition (through the layers' own forward and
# backward and the optimizer's ``update``); the functions below are the same arithmetic without
# the framework, and the tests hold both the NumPy and the native version to that definition.
def _review_forward(ids, mask, label, table, kernel, bias):
    """One review's (rows, counts, n, h (D,), z, loss, e), h summed in float64 and rounded once."""
    held = ids[mask]
    rows, counts = np.unique(held, return_counts=True)
    n = held.size
    h = (table[held].sum(axis=0, dtype=np.float64) / n).astype(table.dtype)
    z = h @ kernel + bias[0]
    loss = np.maximum(z, 0) - z * label + np.log1p(np.exp(-np.abs(z)))
    e = 1 / (1 + np.exp(-z)) - label
    return rows, counts.astype(table.dtype), n, h, z, loss, e


def review_sgd_reference(ids, mask, labels, table, kernel, bias, rate) -> tuple[np.ndarray, np.ndarray]:
    """fastText's SGD, one review at a time, in place: ``w -= rate * dw`` for the kernel, the bias
    and each row of the review.  ids, mask (B, L); labels (B, 1); table (V, D); kernel (D, 1) or (D,); bias
    (1,).  Returns (logits (B,), losses (B,)), each review's before its own step."""
    k, lr = kernel.reshape(-1), table.dtype.type(rate)
    logits, losses = np.empty(len(ids), table.dtype), np.empty(len(ids), table.dtype)
    for b in range(len(ids)):
        rows, counts, n, h, logits[b], losses[b], e = _review_forward(ids[b], mask[b], labels[b, 0], table, k, bias)
        row_step = (counts[:, None] * e / n) * k                 # dE[r], with k before its own step
        k -= lr * (e * h)
        bias -= lr * e
        table[rows] -= lr * row_step
    return logits, losses


def review_adagrad_reference(ids, mask, labels, table, table_acc, kernel, kernel_acc, bias, bias_acc, rate,
                             epsilon) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise Adagrad, one review at a time, in place (``optimizers.RowwiseAdagrad``):
    ``A_r += mean_j dE[r, j]**2; E[r] -= rate dE[r] / (sqrt(A_r) + eps)``, element-wise for the kernel
    and the bias.
    Shapes as :func:`review_sgd_reference`, with table_acc (V,), kernel_acc like kernel,
    bias_acc (1,)."""
    k, k_acc = kernel.reshape(-1), kernel_acc.reshape(-1)
    lr, eps = table.dtype.type(rate), table.dtype.type(epsilon)
    logits, losses = np.empty(len(ids), table.dtype), np.empty(len(ids), table.dtype)
    for b in range(len(ids)):
        rows, counts, n, h, logits[b], losses[b], e = _review_forward(ids[b], mask[b], labels[b, 0], table, k, bias)
        sums = (counts[:, None] * e / n) * k
        held = np.any(sums != 0, axis=1)
        rows, sums = rows[held], sums[held]
        table_acc[rows] += np.mean(np.square(sums, dtype=np.float64), axis=1).astype(table.dtype)
        table[rows] -= sums * (lr / (np.sqrt(table_acc[rows]) + eps))[:, None]
        for weight, acc, grad in ((k, k_acc, e * h), (bias, bias_acc, np.array([e], table.dtype))):
            acc += grad * grad
            weight -= lr * grad / (np.sqrt(acc) + eps)
    return logits, losses


def review_sgd(ids, mask, labels, table, kernel, bias, rate) -> tuple[np.ndarray, np.ndarray]:
    """:func:`review_sgd_reference`; native (float32): ``native.review_sgd`` (two passes per
    review, float64 sums rounded once).  The tests hold both to ``per_review.reference_steps``:
    this NumPy loop in float64 within 1e-12 relative (the same operations, other order), the
    float32 C loop within rtol 1e-5, atol 1e-6 (tests/test_sgd.py, FLOAT32_STEPS)."""
    if uses_native(table):
        return _native.review_sgd(ids, mask, labels, table, kernel, bias, rate)
    return review_sgd_reference(ids, mask, labels, table, kernel, bias, rate)


def review_adagrad(ids, mask, labels, table, table_acc, kernel, kernel_acc, bias, bias_acc, rate,
                   epsilon) -> tuple[np.ndarray, np.ndarray]:
    """:func:`review_adagrad_reference`; native (float32): ``native.review_adagrad`` (held to
    the definition as :func:`review_sgd` is)."""
    if uses_native(table):
        return _native.review_adagrad(ids, mask, labels, table, table_acc, kernel, kernel_acc, bias,
                                      bias_acc, rate, epsilon)
    return review_adagrad_reference(ids, mask, labels, table, table_acc, kernel, kernel_acc, bias, bias_acc,
                                    rate, epsilon)
