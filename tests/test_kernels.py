import numpy as np
import pytest

from npembed import kernels


def test_scatter_add_float64_is_bit_exact():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 50, 2000)
    idx[:300] = 0                                   # a heavy padding row
    values = rng.normal(size=(2000, 8))
    np.testing.assert_array_equal(kernels.scatter_add_rows(idx, values, 50),
                                  kernels.scatter_add_rows_reference(idx, values, 50))


def test_scatter_add_float32_within_rounding():
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 20, 5000)
    values = rng.normal(size=(5000, 4)).astype(np.float32)
    fast = kernels.scatter_add_rows(idx, values, 20)
    ref = kernels.scatter_add_rows_reference(idx, values, 20)
    exact = kernels.scatter_add_rows(idx, values.astype(np.float64), 20)
    assert fast.dtype == np.float32
    # fast is the correctly rounded sum; the reference accumulates float32 rounding
    assert np.abs(fast - exact).max() <= np.abs(ref - exact).max() + 1e-6
    np.testing.assert_allclose(fast, ref, atol=1e-4)


# ----------------------------------------------------------------------------- fused paths
from npembed.layers import Embedding, GlobalAveragePooling1D  # noqa: E402
from npembed.sparse import IndexedSlices, PooledSlices  # noqa: E402

from conftest import padded_batch_with_repeats, small_model  # noqa: E402


def test_row_counts_reference():
    ids = np.array([[3, 3, 0, 0], [5, 3, 7, 0]])
    rows, counts = kernels.row_counts(ids, 10)
    np.testing.assert_array_equal(rows, np.unique(ids))
    np.testing.assert_array_equal(counts, [[2, 2, 0, 0], [1, 1, 1, 1]])
    _, masked = kernels.row_counts(ids, 10, ids != 0)
    np.testing.assert_array_equal(masked, [[0, 2, 0, 0], [0, 1, 1, 1]])
    big_rows, big_counts = kernels.row_counts(ids, 1_000_000)       # the np.unique branch
    np.testing.assert_array_equal(big_rows, rows)
    np.testing.assert_array_equal(big_counts, counts)


@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooled_lookup_equals_the_layers(mask_zero, dtype):
    rng = np.random.default_rng(0)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60)
    embedding = Embedding(40, 6, mask_zero=mask_zero)
    embedding.build(None, rng, np.dtype(dtype))
    table = embedding.params["embeddings"]
    reference = GlobalAveragePooling1D().forward(embedding.forward(ids), embedding.compute_mask(ids, None))
    pooled, _, _ = kernels.pooled_lookup(ids, table, embedding.compute_mask(ids, None))
    assert pooled.dtype == dtype
    if dtype == np.float32:
        # both sum in float64 and round once: the same float32 value, or the neighbour at a tie
        np.testing.assert_array_max_ulp(pooled, reference, maxulp=1)
    else:
        # two float64 sums in different orders: within L * eps of the largest term
        bound = ids.shape[1] * np.finfo(np.float64).eps * np.abs(table).max()
        np.testing.assert_allclose(pooled, reference, rtol=0, atol=bound)


@pytest.mark.parametrize("mask_zero", [False, True])
def test_pooled_slices_equal_the_layers_indexed_slices(mask_zero):
    rng = np.random.default_rng(1)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60)
    mask = ids != 0 if mask_zero else None
    pooling = GlobalAveragePooling1D()
    pooling.forward(rng.normal(size=(*ids.shape, 6)), mask)
    dpooled = rng.normal(size=(8, 6))
    layer_slices = IndexedSlices(pooling.backward(dpooled).reshape(-1, 6), ids.reshape(-1), (40, 6))
    fused = PooledSlices(ids, dpooled, mask, 40)
    np.testing.assert_array_equal(fused.indices, layer_slices.indices)
    np.testing.assert_allclose(fused.values, layer_slices.values, rtol=1e-15)
    np.testing.assert_allclose(fused.to_dense(), layer_slices.to_dense(), rtol=1e-13, atol=1e-17)
    np.testing.assert_allclose(fused.squared_sum(), layer_slices.squared_sum(), rtol=1e-13, atol=1e-17)
    for a, b in zip(fused.row_sums(), layer_slices.row_sums()):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-17)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_update_rows_is_bit_exact(dtype):
    rng = np.random.default_rng(2)
    shape = (50, 4)
    weight, m = rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    v = np.abs(rng.normal(size=shape)).astype(dtype)
    rows = np.array([0, 3, 17, 49])
    grad_rows = rng.normal(size=(4, 4)).astype(dtype)
    squared_rows = np.abs(rng.normal(size=(4, 4))).astype(dtype)
    dense_grad, dense_squared = np.zeros(shape, dtype), np.zeros(shape, dtype)
    dense_grad[rows], dense_squared[rows] = grad_rows, squared_rows
    args = (dtype(0.01), dtype(0.1), dtype(0.001), dtype(1e-7))
    ref = [weight.copy(), m.copy(), v.copy()]
    kernels.adam_update_reference(*ref, dense_grad, dense_squared, *args)
    fast = [weight.copy(), m.copy(), v.copy()]
    kernels.adam_update_rows(*fast, rows, grad_rows, squared_rows, *args, (np.empty(shape, dtype), np.empty(shape, dtype)))
    for a, b in zip(ref, fast):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mask_zero", [False, True])
def test_fused_model_trains_like_the_layer_by_layer_model(small_batch, mask_zero):
    ids, labels = small_batch
    fused, plain = small_model(mask_zero=mask_zero), small_model(mask_zero=mask_zero)
    plain.fused = False
    assert fused.fused
    for a, b in zip(fused.compute_gradients(ids, labels)[1], plain.compute_gradients(ids, labels)[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-18)
    fused.compile()
    plain.compile()
    for _ in range(20):
        fused.train_on_batch(ids, labels)
        plain.train_on_batch(ids, labels)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
