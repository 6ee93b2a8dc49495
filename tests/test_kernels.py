import numpy as np
import pytest

from npembed import kernels
from npembed.optimizers import adam_update


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
def test_pooled_lookup_equals_the_layers(mask_zero, dtype, kernel_backend):
    rng = np.random.default_rng(0)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60)
    embedding = Embedding(40, 6, mask_zero=mask_zero)
    embedding.build(None, rng, np.dtype(dtype))
    table = embedding.params["embeddings"]
    reference = GlobalAveragePooling1D().forward(embedding.forward(ids), embedding.compute_mask(ids, None))
    pooled, _ = kernels.pooled_lookup(ids, table, embedding.compute_mask(ids, None))
    assert pooled.dtype == dtype
    if dtype == np.float32:
        # both sum in float64 and round once: the same float32 value, or the neighbour at a tie
        np.testing.assert_array_max_ulp(pooled, reference, maxulp=1)
    else:
        # two float64 sums in different orders: within L * eps of the largest term
        bound = ids.shape[1] * np.finfo(np.float64).eps * np.abs(table).max()
        np.testing.assert_allclose(pooled, reference, rtol=0, atol=bound)


@pytest.mark.parametrize("mask_zero", [False, True])
def test_pooled_slices_equal_the_layers_indexed_slices(mask_zero, kernel_backend):
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
def test_adam_update_rows_is_bit_exact(dtype, kernel_backend):
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
    adam_update(*ref, dense_grad, dense_squared, *args)
    fast = [weight.copy(), m.copy(), v.copy()]
    kernels.adam_update_rows(*fast, rows, grad_rows, squared_rows, *args, (np.empty(shape, dtype), np.empty(shape, dtype)))
    for a, b in zip(ref, fast):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mask_zero", [False, True])
def test_fused_model_trains_like_the_layer_by_layer_model(small_batch, mask_zero, kernel_backend):
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


# ----------------------------------------------------------------------------- the native backend
from npembed import native  # noqa: E402


def _adam_state(rng, shape, dtype):
    weight, m = rng.normal(size=shape).astype(dtype), (rng.normal(size=shape) * 1e-3).astype(dtype)
    v = (np.abs(rng.normal(size=shape)) * 1e-6).astype(dtype)
    m[5] = 3e-45 if dtype == np.float32 else 5e-324       # a denormal momentum, stuck there
    v[6] = 0
    return weight, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lazy", [False, True])
def test_native_adam_rows_is_bit_exact(dtype, lazy, native_backend):
    rng = np.random.default_rng(3)
    shape = (300, 16)
    rows = np.array([0, 5, 6, 7, 150, 299])                # first and last rows, a run of three
    grad_rows = rng.normal(size=(rows.size, 16)).astype(dtype)
    squared_rows = (np.square(grad_rows) * 1.5).astype(dtype)
    args = (dtype(3e-4), dtype(0.1), dtype(0.001), dtype(1e-7))
    state = _adam_state(rng, shape, dtype)
    expected = [a.copy() for a in state]
    if lazy:
        kernels.set_backend("numpy")
        kernels.adam_update_lazy_rows(*expected, rows, grad_rows, squared_rows, *args)
        kernels.set_backend("native")
    else:
        dense_grad, dense_squared = np.zeros(shape, dtype), np.zeros(shape, dtype)
        dense_grad[rows], dense_squared[rows] = grad_rows, squared_rows
        adam_update(*expected, dense_grad, dense_squared, *args)
    got = [a.copy() for a in state]
    native.adam_update_rows(*got, rows, grad_rows, squared_rows, *args, lazy=lazy)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    if lazy:
        untouched = np.setdiff1d(np.arange(shape[0]), rows)
        np.testing.assert_array_equal(got[0][untouched], state[0][untouched])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_dense_adam_is_bit_exact_on_odd_sizes(dtype, native_backend):
    rng = np.random.default_rng(4)
    for shape in [(1,), (16,), (17, 3), (16, 16)]:          # vector loop remainders
        state = [rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype),
                 np.abs(rng.normal(size=shape)).astype(dtype)]
        grad = rng.normal(size=shape).astype(dtype)
        args = (dtype(0.01), dtype(0.1), dtype(0.001), dtype(1e-7))
        expected, got = [a.copy() for a in state], [a.copy() for a in state]
        adam_update(*expected, grad, np.square(grad), *args)
        native.adam_update(*got, grad, *args)
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("num_rows", [40, 1_000_000])       # scan the slot map / sort the rows
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_row_sums_equal_numpy(mask_zero, num_rows, dtype, native_backend):
    rng = np.random.default_rng(5)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60).astype(np.int32)
    mask = ids != 0 if mask_zero else None
    row_gradient = rng.normal(size=(8, 6)).astype(dtype)
    rows, sums, squares = native.pooled_row_sums(native.review_row_counts(ids, mask, num_rows),
                                                 row_gradient, num_rows)
    ref_rows, counts = kernels.row_counts(ids, num_rows, mask)
    exact_sums = counts.T @ row_gradient.astype(np.float64)
    exact_squares = counts.T @ np.square(row_gradient).astype(np.float64)   # squares in dtype
    np.testing.assert_array_equal(rows, ref_rows)              # the padding row too, when masked
    assert sums.dtype == squares.dtype == dtype
    if dtype == np.float32:
        # a float64 sum of at most 8 exact terms, rounded once to float32: within one ulp
        np.testing.assert_array_max_ulp(sums, exact_sums.astype(dtype), maxulp=1)
        np.testing.assert_array_max_ulp(squares, exact_squares.astype(dtype), maxulp=1)
    else:
        # two float64 sums of the same <= 8 terms in different orders: within 8 eps of their
        # absolute sum (relative closeness fails where the terms cancel)
        bound = 8 * np.finfo(np.float64).eps * (counts.T @ np.abs(row_gradient))
        np.testing.assert_array_less(np.abs(sums - exact_sums), bound + 1e-300)
        np.testing.assert_allclose(squares, exact_squares, rtol=8 * np.finfo(np.float64).eps)
    if mask_zero:
        assert rows[0] == 0 and not sums[0].any()


def test_native_review_counts_match_the_count_matrix(native_backend):
    ids = np.array([[3, 3, 0, 0], [5, 3, 7, 0], [7, 7, 7, 7]])
    for mask in (None, ids != 0):
        pair_rows, pair_counts, offsets = native.review_row_counts(ids, mask, 10)
        rows, counts = kernels.row_counts(ids, 10, mask)
        rebuilt = np.zeros_like(counts)
        for b in range(3):
            for p in range(offsets[b], offsets[b + 1]):
                rebuilt[b, np.searchsorted(rows, pair_rows[p])] += pair_counts[p]
        np.testing.assert_array_equal(rebuilt, counts)
    np.testing.assert_array_equal(offsets, [0, 2, 6, 7])         # masked: 0 listed with count 0


@pytest.mark.parametrize("num_rows", [40, 1_000_000])
def test_native_scratch_maps_are_left_clean(num_rows, native_backend):
    rng = np.random.default_rng(6)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60)
    counts = native.review_row_counts(ids, ids != 0, num_rows)
    native.pooled_row_sums(counts, rng.normal(size=(8, 4)), num_rows)
    assert not native._counter(num_rows).any() and (native._slot_map(num_rows) == -1).all()


def test_native_adam_refuses_rows_out_of_order_or_range(native_backend):
    weight, m, v = (np.zeros((10, 2), np.float32) for _ in range(3))
    grads = np.ones((2, 2), np.float32)
    args = (np.float32(0.01), np.float32(0.1), np.float32(0.001), np.float32(1e-7))
    for rows in ([3, 3], [4, 2], [0, 10], [-1, 2]):
        with pytest.raises(ValueError, match="ascending, distinct and in range"):
            native.adam_update_rows(weight, m, v, np.array(rows), grads, grads, *args)
    assert not weight.any()
    with pytest.raises(ValueError, match="buffer grad"):
        native.adam_update_rows(weight, m, v, np.array([1, 2]), grads[:1], grads, *args)


def test_a_missing_compiler_falls_back_to_numpy_with_a_warning(tmp_path, monkeypatch):
    with pytest.raises(native.BuildError, match="no C compiler"):
        native._build_key(["/nonexistent/cc"])
    monkeypatch.setenv("NPEMBED_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.delenv("NPEMBED_KERNELS", raising=False)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(kernels, "_native", None)
    monkeypatch.setattr(kernels, "_backend", None)
    with pytest.warns(RuntimeWarning, match="NumPy kernels.*no C compiler"):
        assert kernels.backend() == "numpy"
    with pytest.raises(ImportError, match="could not be built"):
        kernels.set_backend("native")
    monkeypatch.setenv("NPEMBED_KERNELS", "fortran")
    monkeypatch.setattr(kernels, "_backend", None)
    with pytest.raises(ValueError, match="NPEMBED_KERNELS"):
        kernels.backend()


def test_a_failing_build_reports_the_compiler_output(tmp_path):
    with pytest.raises(native.BuildError, match="compiling npembed's C kernels failed"):
        native._compile(["false"], tmp_path / "x" / "module.so")
    assert not (tmp_path / "x" / "module.so").exists()


def test_an_unwritable_cache_is_a_build_error(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("NPEMBED_CACHE", str(blocker))
    monkeypatch.setattr(native, "_module", None)
    with pytest.raises(native.BuildError, match="could not build the C kernels in the cache"):
        native.load()


def test_native_kernels_refuse_ids_outside_the_table(native_backend):
    # model.forward checks ids first (checks.check_token_ids); the C loop checks again, so a
    # direct call with a bad id raises instead of writing outside its counter
    table = np.zeros((10, 4), np.float32)
    for bad in (10, -1):
        ids = np.array([[1, 2, 3], [4, bad, 0]], dtype=np.int32)
        with pytest.raises(ValueError, match=r"token id .* at position \(1, 1\) is outside \[0, 10\)"):
            kernels.pooled_lookup(ids, table, None)
    assert not native._counter(10).any()
