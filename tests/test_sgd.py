"""Plain SGD and fastText's per-review step (``optimizers.SGD``, ``per_review.py``), and the
native masked-average kernels they run on.

What could be false: the masked average without distinct rows could drop or double a
position; the SGD scatter could miss a repeated row; the per-review kernel could use the
updated Dense kernel for the rows' step, or the batch's rate for the wrong review; the decay
could be off by one step.  Each is checked against a definition: the layers' forward, the dense
gradient, float64 finite differences of one review's loss.
"""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed import kernels
from npembed.gradcheck import numerical_gradient
from npembed.layers import GlobalAveragePooling1D
from npembed.optimizers import SGD
from npembed.per_review import reference_steps, train_step
from npembed.sparse import PooledSlices

V, D = 40, 4


def batch(seed=0, dtype=np.int64):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 9, (5, 12)).astype(dtype)        # few ids: rows repeat within and across reviews
    ids[1, 3:] = 0
    ids[3, 7:] = 0
    ids[4, 0] = 39                                         # the last row
    labels = np.array([1, 0, 1, 1, 0])
    return ids, labels


def model(dtype="float64", lr=0.3, decay_steps=None, seed=2):
    m = npembed.tutorial_model(V, D, 0, mask_zero=True, seed=seed, dtype=dtype)
    m.compile(optimizer=SGD(lr, decay_steps=decay_steps))
    return m


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_masked_average_equals_the_pooling_layer(kernel_backend, id_dtype):
    ids, _ = batch(dtype=id_dtype)
    table = np.random.default_rng(1).normal(size=(V, D))
    mask = ids != 0
    pooled, memo = kernels.pooled_lookup(ids, table, mask)
    expected = GlobalAveragePooling1D().forward(table[ids], mask)
    np.testing.assert_allclose(pooled, expected, rtol=1e-15, atol=1e-16)


def test_sgd_scatter_is_the_dense_gradient_step(kernel_backend):
    ids, _ = batch()
    rng = np.random.default_rng(3)
    table, dpooled = rng.normal(size=(V, D)), rng.normal(size=(5, D))
    mask = ids != 0
    grad = PooledSlices(ids, dpooled, mask, V)
    expected = table - 0.7 * grad.to_dense()
    assert np.count_nonzero(np.bincount(ids[mask]) > 1)        # repeated rows are in the batch
    kernels.sgd_pooled_rows(table, ids, mask, grad.row_gradient, 0.7)
    np.testing.assert_allclose(table, expected, rtol=1e-13, atol=1e-15)


def test_sgd_batch_step_is_minus_rate_times_the_finite_difference_gradient(kernel_backend):
    ids, labels = batch()
    m = model(lr=0.25)
    before = m.get_weights()
    m.train_step(ids, labels)
    after = m.get_weights()
    probe = model()                               # same seed: the same start
    for weight_before, weight_after, live in zip(before, after, probe.weights):
        numeric = numerical_gradient(lambda: probe.loss(labels, probe.forward(ids)), live)
        np.testing.assert_allclose((weight_before - weight_after) / 0.25, numeric, rtol=1e-6, atol=1e-9)


def test_linear_decay_reaches_zero_at_decay_steps():
    sgd = SGD(2.0, decay_steps=4)
    rates = []
    for _ in range(6):
        rates.append(sgd.current_rate())
        sgd.iterations += 1
    assert rates == [2.0, 1.5, 1.0, 0.5, 0.0, 0.0]
    assert SGD(2.0).current_rate() == 2.0


# The C path is float32: against the float32 framework steps, each entry is a few dozen float32
# operations per review (sums in a different order, double vs float), so the two agree to about
# a hundred units of float32 roundoff (u = 6e-8) of the entry's scale: rtol 1e-5, atol 1e-6.
FLOAT32_STEPS = dict(rtol=1e-5, atol=1e-6)


def test_per_review_kernel_equals_batch_one_framework_steps(native_backend):
    ids, labels = batch()
    fast, slow = model("float32"), model("float32")
    loss, logits = train_step(fast, ids, labels)                # the native kernel
    ref_logits, ref_losses = reference_steps(slow, ids, labels.reshape(-1, 1), 0.3)
    np.testing.assert_allclose(logits[:, 0], ref_logits, **FLOAT32_STEPS)
    assert loss == pytest.approx(ref_losses.mean(), rel=1e-5)
    for a, b in zip(fast.weights, slow.weights):
        np.testing.assert_allclose(a, b, **FLOAT32_STEPS)
    assert not np.allclose(logits[1:, 0], model("float32").forward(ids)[1:, 0])   # later reviews saw earlier steps


@pytest.mark.parametrize("optimizer", ["sgd", "rowwise-adagrad"])
def test_per_review_float32_kernel_stays_close_to_float64(native_backend, optimizer):
    """Both per-review optimizers (tests/test_rowwise_adagrad.py has Adagrad's own tests)."""
    from npembed.optimizers import RowwiseAdagrad
    ids, labels = batch(dtype=np.int32)
    f32, f64 = model("float32"), model("float64")
    if optimizer == "rowwise-adagrad":
        for m in (f32, f64):
            m.compile(optimizer=RowwiseAdagrad(0.3))
    for _ in range(3):
        train_step(f32, ids, labels)
        train_step(f64, ids, labels)
    for a, b in zip(f32.weights, f64.weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_one_review_step_is_minus_rate_times_the_finite_difference_gradient(kernel_backend):
    """docs/gradients_appendix.md §5: the step on review b is -lr * d loss_b / d weights."""
    ids, labels = batch()
    one, label = ids[1:2], labels[1:2]                           # a review with padding
    m = model(lr=0.5)
    before = m.get_weights()
    train_step(m, one, label)
    probe = model()
    for weight_before, weight_after, live in zip(before, m.weights, probe.weights):
        numeric = numerical_gradient(lambda: probe.loss(label, probe.forward(one)), live)
        np.testing.assert_allclose((weight_before - weight_after) / 0.5, numeric, rtol=1e-6, atol=1e-9)
    moved = np.flatnonzero(np.any(before[0] != m.weights[0], axis=1))
    assert set(moved) == set(one[one != 0])                      # only the review's rows moved


def test_per_review_rate_decays_per_batch(native_backend):
    ids, labels = batch()
    m = model("float32", lr=0.4, decay_steps=2)
    train_step(m, ids, labels)
    train_step(m, ids, labels)
    frozen = m.get_weights()
    train_step(m, ids, labels)                                   # rate 0 now: nothing moves
    for a, b in zip(frozen, m.weights):
        np.testing.assert_array_equal(a, b)
    assert m.optimizer.iterations == 3


def test_per_review_refuses_other_models_and_empty_reviews(native_backend):
    ids, labels = batch()
    hidden = npembed.tutorial_model(V, D, 3, mask_zero=True, seed=0)
    hidden.compile(optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="per-review SGD"):
        train_step(hidden, ids, labels)
    ids[2] = 0
    for dtype in ("float32", "float64"):                      # the C kernel, the NumPy one
        untouched = model(dtype)
        with pytest.raises(ValueError, match="row 2 of the batch is all padding"):
            train_step(untouched, ids, labels)
        for a, b in zip(untouched.weights, model(dtype).weights):   # reviews 0 and 1 did not move it
            np.testing.assert_array_equal(a, b)
    adam = model()
    adam.compile(optimizer=npembed.optimizers.Adam())
    with pytest.raises(ValueError, match="Adam takes batch steps only"):
        train_step(adam, ids, labels)


@pytest.mark.parametrize("optimizer", ["sgd", "rowwise-adagrad"])
def test_numpy_review_kernels_equal_the_framework_steps(optimizer):
    """kernels.review_sgd_reference / review_adagrad_reference (plain NumPy, no layers) against
    the definition through the layers (per_review.reference_steps), float64."""
    from npembed.optimizers import RowwiseAdagrad
    ids, labels = batch()
    fast, slow = model(), model()
    if optimizer == "rowwise-adagrad":
        for m in (fast, slow):
            m.compile(optimizer=RowwiseAdagrad(0.3))
    previous = kernels.backend()
    kernels.set_backend("numpy")
    try:
        for _ in range(3):
            loss, logits = train_step(fast, ids, labels)
            ref_logits, ref_losses = reference_steps(slow, ids, labels.reshape(-1, 1), 0.3)
            slow.optimizer.iterations += 1
            np.testing.assert_allclose(logits[:, 0], ref_logits, rtol=1e-13)
    finally:
        kernels.set_backend(previous)
    for a, b in zip(fast.weights, slow.weights):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_sgd_options_are_checked():
    from npembed.config import TrainConfig
    from npembed.errors import UsageError
    with pytest.raises(UsageError, match="--optimizer sgd"):
        TrainConfig(optimizer="sgd").validate()
    with pytest.raises(UsageError, match="--optimizer must be"):
        TrainConfig.for_model("ngrams", optimizer="adagrad").validate()
    TrainConfig.for_model("ngrams", optimizer="sgd").validate()
    with pytest.raises(ValueError):
        SGD(0.0)
    with pytest.raises(ValueError):
        SGD(0.1, decay_steps=0)


def test_lazy_adam_from_the_ids_equals_the_generic_lazy_path(native_backend, dtype="float32"):
    """The fused kernel (no per-review distinct rows) against the native pooled_row_sums + lazy
    rows: both sum each row in float64 and round once (the C path is float32 only)."""
    from npembed import native
    ids, _ = batch(dtype=np.int32)
    rng = np.random.default_rng(4)
    mask = ids != 0
    table = rng.normal(size=(V, D)).astype(dtype)
    m, v = rng.normal(size=(V, D)).astype(dtype), rng.random((V, D)).astype(dtype)
    grad = rng.normal(size=(5, D)).astype(dtype)
    constants = [np.dtype(dtype).type(c) for c in (0.01, 0.1, 0.001, 1e-7)]
    fused = [a.copy() for a in (table, m, v)]
    native.pooled_lazy_adam(*fused, ids, mask, grad, *constants)
    rows, sums, _ = kernels.pooled_row_sums(ids, mask, grad, V)
    generic = [a.copy() for a in (table, m, v)]
    kernels.adam_update_lazy_rows(*generic, rows, sums, np.square(sums), *constants)
    for a, b in zip(fused, generic):
        np.testing.assert_array_equal(a, b)            # these float32 sums are exact in double
    untouched = np.setdiff1d(np.arange(V), ids)             # row 0 (padding) moves: a zero-gradient step
    assert 0 in rows and 0 not in untouched and untouched.size > 20
    np.testing.assert_array_equal(fused[0][untouched], table[untouched])
    bad, before = ids.copy(), fused[0].copy()
    bad[0, 0] = V
    with pytest.raises(IndexError):
        native.pooled_lazy_adam(*fused, bad, bad != 0, grad, *constants)
    np.testing.assert_array_equal(fused[0], before)           # nothing moved on the error
    native.pooled_lazy_adam(*fused, ids, mask, grad, *constants)   # the slot map was left clean
