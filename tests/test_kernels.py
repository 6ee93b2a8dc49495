"""The fast kernels against their references (kernels.py's docstring states what is equal):

- bit for bit: Adam's element-wise update (dense, table rows, lazy rows), given the same
  gradient; the forward's token counts and the backward's distinct rows; float64 on any backend
  (it always runs the NumPy reference);
- within a stated bound: sums rounded in another order (the pooled forward, the per-row
  gradient sums, SGD's scatter).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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

U32 = float(np.finfo(np.float32).eps) / 2          # float32's unit roundoff, 2^-24
ADAM_ARGS = (np.float32(3e-4), np.float32(0.1), np.float32(0.001), np.float32(1e-7))


def _adam_state(rng, shape):
    weight, m = rng.normal(size=shape).astype(np.float32), (rng.normal(size=shape) * 1e-3).astype(np.float32)
    v = (np.abs(rng.normal(size=shape)) * 1e-6).astype(np.float32)
    m[5] = 3e-45                                         # a denormal momentum, stuck there
    v[6] = 0
    return weight, m, v


def _on_numpy(function, *args):
    """function(*args) on the NumPy backend, then back to native."""
    kernels.set_backend("numpy")
    try:
        return function(*args)
    finally:
        kernels.set_backend("native")


@pytest.mark.parametrize("variant", ["rows", "lazy_rows"])
def test_native_adam_rows_are_bit_for_bit_numpy(variant, native_backend):
    rng = np.random.default_rng(3)
    shape = (300, 16)
    rows = np.array([0, 5, 6, 7, 150, 299])                # first and last rows, a run of three
    grad_rows = rng.normal(size=(rows.size, 16)).astype(np.float32)
    squared_rows = (np.square(grad_rows) * 1.5).astype(np.float32)
    state = _adam_state(rng, shape)
    expected, got = [a.copy() for a in state], [a.copy() for a in state]
    if variant == "lazy_rows":
        _on_numpy(kernels.adam_update_lazy_rows, *expected, rows, grad_rows, squared_rows, *ADAM_ARGS)
        native.lazy_adam_rows(*got, rows, grad_rows, squared_rows, *ADAM_ARGS)
    else:
        dense_grad, dense_squared = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        dense_grad[rows], dense_squared[rows] = grad_rows, squared_rows
        adam_update(*expected, dense_grad, dense_squared, *ADAM_ARGS)      # optimizers.py's definition
        native.adam_rows(*got, rows, grad_rows, squared_rows, *ADAM_ARGS)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    if variant == "lazy_rows":
        untouched = np.setdiff1d(np.arange(shape[0]), rows)
        np.testing.assert_array_equal(got[0][untouched], state[0][untouched])


def test_native_dense_adam_is_bit_for_bit_on_odd_sizes(native_backend):
    rng = np.random.default_rng(4)
    for shape in [(1,), (16,), (17, 3), (16, 16)]:          # vector loop remainders
        state = [rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32),
                 np.abs(rng.normal(size=shape)).astype(np.float32)]
        grad = rng.normal(size=shape).astype(np.float32)
        expected, got = [a.copy() for a in state], [a.copy() for a in state]
        adam_update(*expected, grad, np.square(grad), *ADAM_ARGS)
        native.adam_dense(*got, grad, *ADAM_ARGS)
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)


def test_an_adam_step_from_the_same_gradients_is_bit_identical_on_both_backends(small_batch, native_backend):
    """What the backends share exactly: given one set of gradients, the whole optimizer step."""
    ids, labels = small_batch
    models = [small_model(mask_zero=True, dtype="float32") for _ in range(2)]
    _, grads = models[0].compute_gradients(ids, labels)
    for model in models:
        model.compile()
    models[0].optimizer.apply_gradients(grads, models[0].weights)          # native
    _on_numpy(models[1].optimizer.apply_gradients, grads, models[1].weights)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_float64_always_runs_the_numpy_reference(native_backend):
    rng = np.random.default_rng(8)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60)
    table = rng.normal(size=(40, 6))
    assert not kernels.uses_native(table) and kernels.uses_native(table.astype(np.float32))
    for mask in (None, ids != 0):
        np.testing.assert_array_equal(kernels.pooled_lookup(ids, table, mask)[0],
                                      _on_numpy(kernels.pooled_lookup, ids, table, mask)[0])
    with pytest.raises(TypeError, match="weight must be float32, got format .d."):
        native.adam_dense(table, table.copy(), table.copy(), table.copy(), 0.1, 0.1, 0.1, 0.1)


@pytest.mark.parametrize("mask_zero", [False, True])
def test_native_pooled_forward_is_within_one_ulp_of_numpy(mask_zero, native_backend):
    """Both sum in float64 and round once: the same float32 value, or its neighbour at a tie."""
    rng = np.random.default_rng(9)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60)
    mask = ids != 0 if mask_zero else None
    table = rng.normal(size=(40, 6)).astype(np.float32)
    fast, _ = kernels.pooled_lookup(ids, table, mask)
    reference, _ = _on_numpy(kernels.pooled_lookup, ids, table, mask)
    np.testing.assert_array_max_ulp(fast, reference, maxulp=1)
    if mask_zero:                                        # the n-gram path, from the ids
        np.testing.assert_array_max_ulp(native.masked_pooled_lookup(ids, table, mask)[0], reference, maxulp=1)


@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("num_rows", [40, 1_000_000])       # scan the slot map / sort the rows
def test_native_row_sums_are_within_the_float32_sum_bound_of_numpy(mask_zero, num_rows, native_backend):
    """NumPy: a float32 product, at most B terms per entry, each addition rounded (error <=
    (B - 1) u sum|terms|, Higham's gamma); native: float64, rounded once (<= u |sum|).  So they
    differ by at most (B + 1) u sum_b c_b |g_b|; the rows are identical."""
    rng = np.random.default_rng(5)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60)
    mask = ids != 0 if mask_zero else None
    row_gradient = rng.normal(size=(8, 6)).astype(np.float32)
    rows, sums, squares = kernels.pooled_row_sums(ids, mask, row_gradient, num_rows)
    ref_rows, ref_sums, ref_squares = _on_numpy(kernels.pooled_row_sums, ids, mask, row_gradient, num_rows)
    np.testing.assert_array_equal(rows, ref_rows)              # the padding row too, when masked
    assert sums.dtype == squares.dtype == np.float32
    _, counts = kernels.row_counts(ids, num_rows, mask)
    batch = ids.shape[0]
    for fast, reference, terms in ((sums, ref_sums, np.abs(row_gradient)), (squares, ref_squares, np.square(row_gradient))):
        bound = (batch + 1) * U32 * (counts.T @ terms.astype(np.float64))
        assert np.all(np.abs(fast.astype(np.float64) - reference) <= bound)
    exact = counts.T @ row_gradient.astype(np.float64)
    np.testing.assert_array_max_ulp(sums, exact.astype(np.float32), maxulp=1)   # native: rounded once
    if mask_zero:
        assert rows[0] == 0 and not sums[0].any()


def test_native_sgd_scatter_is_within_its_bound_of_numpy(native_backend):
    """Native: a row held k times takes k rounded subtractions; NumPy: one subtraction of the
    rounded sum (a float32 product).  Each of the k + 1 roundings errs by at most u times a
    partial result, each at most |w| + sum|steps|: |native - numpy| <= 2 (k + 1) u (|w| + sum|steps|)."""
    rng = np.random.default_rng(10)
    ids = padded_batch_with_repeats(rng, 40, batch=8, max_len=60)
    mask = ids != 0
    table = rng.normal(size=(40, 6)).astype(np.float32)
    row_gradient = rng.normal(size=(8, 6)).astype(np.float32)
    fast, reference = table.copy(), table.copy()
    kernels.sgd_pooled_rows(fast, ids, mask, row_gradient, 0.7)
    _on_numpy(kernels.sgd_pooled_rows, reference, ids, mask, row_gradient, 0.7)
    rows, counts = kernels.row_counts(ids, 40, mask)
    held = np.zeros(40)
    held[rows] = counts.sum(axis=0)
    step = np.abs(row_gradient * np.float32(0.7)).astype(np.float64)
    moved = np.zeros((40, 6))
    moved[rows] = counts.T @ step
    bound = 2 * (held[:, None] + 1) * U32 * (np.abs(table) + moved)
    assert np.all(np.abs(fast.astype(np.float64) - reference) <= bound)
    assert not np.array_equal(fast, table)


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
    native.pooled_row_sums(counts, rng.normal(size=(8, 4)).astype(np.float32), num_rows)
    assert not native._counter(num_rows).any() and (native._slot_map(num_rows) == -1).all()


# ----------------------------------------------------------------------------- no unchecked buffer
def test_the_binding_refuses_buffers_of_the_wrong_size_type_or_layout(native_backend):
    weight, m, v = (np.zeros((10, 2), np.float32) for _ in range(3))
    grads = np.ones((2, 2), np.float32)
    module = native.load()
    for rows in ([3, 3], [4, 2], [0, 10], [-1, 2]):
        with pytest.raises(ValueError, match="ascending, distinct and in range"):
            native.adam_rows(weight, m, v, np.array(rows), grads, grads, *ADAM_ARGS)
    with pytest.raises(ValueError, match="grad_rows"):
        native.adam_rows(weight, m, v, np.array([1, 2]), grads[:1], grads, *ADAM_ARGS)
    # straight to the binding, past native.py: a size the shapes do not give is refused
    with pytest.raises(ValueError, match=r"m holds 72 bytes, needs 80"):
        module.adam_dense(weight, m[:9], v, weight, 20, 0.1, 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="v holds 160 bytes, needs 80"):
        module.adam_dense(weight, m, np.zeros((20, 2), np.float32), weight, 20, 0.1, 0.1, 0.1, 0.1)
    with pytest.raises(TypeError, match="grad must be float32"):
        module.adam_dense(weight, m, v, weight.astype(np.float64), 20, 0.1, 0.1, 0.1, 0.1)
    with pytest.raises(TypeError, match="m must be a C-contiguous, writable float32"):
        module.adam_dense(weight, np.zeros((2, 10), np.float32).T, v, weight, 20, 0.1, 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="bad shape"):
        module.adam_dense(weight, m, v, weight, -1, 0.1, 0.1, 0.1, 0.1)
    assert not weight.any() and not m.any()


def test_optimizer_state_of_another_model_is_refused_on_both_backends(kernel_backend):
    """Issue 22, case 4: moments built for other shapes never reach a kernel."""
    weight = np.zeros((10, 2), np.float32)
    for m in (np.zeros((8, 2), np.float32), np.zeros((12, 2), np.float32), np.zeros((2, 10), np.float32)):
        with pytest.raises(ValueError, match="built for another model"):
            kernels.adam_update(weight, m, np.zeros_like(weight), weight, None, *ADAM_ARGS)
        with pytest.raises(ValueError, match="built for another model"):
            kernels.adam_update_rows(weight, np.zeros_like(weight), m, np.array([1]), weight[:1], weight[:1],
                                     *ADAM_ARGS)


def test_native_kernels_refuse_ids_outside_the_table_before_anything_moves(native_backend):
    # model.forward checks ids first (checks.check_token_ids); the binding checks again, so a
    # direct call with a bad id raises instead of reading or writing outside the table
    table = np.zeros((10, 4), np.float32)
    for bad in (10, -1):
        ids = np.array([[1, 2, 3], [4, bad, 0]], dtype=np.int32)
        with pytest.raises(IndexError, match=r"token id .* at position \(1, 1\) is outside the table's rows \[0, 10\)"):
            kernels.pooled_lookup(ids, table, None)
        with pytest.raises(IndexError, match=r"position \(1, 1\)"):
            native.sgd_scatter(table, ids, ids != 0, np.ones((2, 4), np.float32))
        with pytest.raises(IndexError, match=r"position \(1, 1\)"):
            native.review_sgd(ids, ids != 0, np.ones(2), table, np.ones(4, np.float32), np.ones(1, np.float32), 0.1)
    assert not native._counter(10).any() and not table.any()


def test_a_review_without_tokens_is_refused_before_any_review_moves(native_backend):
    table, kernel, bias = np.ones((10, 4), np.float32), np.ones(4, np.float32), np.zeros(1, np.float32)
    ids = np.array([[1, 2], [3, 0], [0, 0]])
    with pytest.raises(ValueError, match="review 2 of the batch has no token"):
        native.review_sgd(ids, ids != 0, np.ones(3), table, kernel, bias, 0.1)
    assert (table == 1).all() and (kernel == 1).all() and not bias.any()


# ----------------------------------------------------------------------------- the build
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
    with pytest.raises(ImportError, match="cannot be used here"):
        kernels.set_backend("native")
    monkeypatch.setenv("NPEMBED_KERNELS", "fortran")
    monkeypatch.setattr(kernels, "_backend", None)
    with pytest.raises(ValueError, match="NPEMBED_KERNELS"):
        kernels.backend()


def test_a_failing_build_reports_the_compiler_output(tmp_path):
    with pytest.raises(native.BuildError, match="compiling npembed's C kernels failed"):
        native._compile(["false"], tmp_path / "x" / "module.so")
    assert not (tmp_path / "x" / "module.so").exists()


def test_an_unwritable_cache_is_a_build_error_that_says_what_to_do(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("NPEMBED_CACHE", str(blocker))
    monkeypatch.setattr(native, "_module", None)
    with pytest.raises(native.BuildError, match="cannot be written .*set NPEMBED_CACHE to a writable folder"):
        native.load()


def test_a_built_module_loads_from_a_cache_it_cannot_write(tmp_path, monkeypatch):
    """A read-only cache holding the build: loaded as it is, no lock or write attempted."""
    monkeypatch.setenv("NPEMBED_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_module", None)
    native.load()                                                # built while writable
    monkeypatch.setattr(native, "_module", None)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(native, "locked_folder", read_only)
    assert native.load().adam_dense                              # loaded without the lock
    for built in tmp_path.glob("native/*/*.sha256"):
        built.unlink()                                           # now nothing usable is there
    monkeypatch.setattr(native, "_module", None)
    with pytest.raises(native.BuildError, match="Permission denied.*set NPEMBED_CACHE"):
        native.load()


def test_the_build_key_covers_every_source_the_whole_cc_and_its_flags(tmp_path, monkeypatch):
    """Issue 22, case 5: a library built by CC="gcc -ffast-math -O0" is not a default run's."""
    key = native._build_key(["gcc"])
    assert native._build_key(["gcc", "-ffast-math", "-O0"]) != key
    sources = tmp_path / "csrc"
    sources.mkdir()
    for path in native.sources():
        (sources / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(native, "SOURCE_DIR", sources)
    assert native._build_key(["gcc"]) == key
    header = sources / "kernels.h"
    header.write_bytes(header.read_bytes() + b"\n")            # a header alone changes the key
    assert native._build_key(["gcc"]) != key


def _load_in(cache: Path, cc: str | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "NPEMBED_CACHE": str(cache), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("CC", None)
    if cc:
        env["CC"] = cc
    code = "from npembed import native; native.load(); print(native.load().__file__)"
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def test_a_build_with_other_cc_flags_is_not_reused_by_a_default_run(tmp_path):
    if subprocess.run(["gcc", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no gcc here")
    fast_math, _ = _load_in(tmp_path, 'gcc -ffast-math -O0').communicate(timeout=300)
    default, err = _load_in(tmp_path, "gcc").communicate(timeout=300)
    assert fast_math.strip() and default.strip(), err
    assert Path(fast_math.strip()).parent != Path(default.strip()).parent
    assert len(list(tmp_path.glob("native/*/_npembed_native*.sha256"))) == 2


def _slow_compiler(tmp_path: Path) -> Path:
    """A "compiler" that answers --version and otherwise records its pid and waits."""
    script = tmp_path / "slowcc"
    script.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then echo slowcc 1; exit 0; fi\n"
                      f"echo $$ > {tmp_path}/compiler.pid\nexec sleep 60\n")
    script.chmod(0o755)
    return script


def _wait_for(path: Path, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return int(path.read_text())


def _gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return True                                   # a zombie: dead, not yet reaped
        time.sleep(0.05)
    return False


@pytest.mark.skipif(sys.platform != "linux", reason="process groups, PR_SET_PDEATHSIG and /proc as on Linux")
def test_an_interrupted_or_killed_build_leaves_no_compiler_and_no_lasting_leftovers(tmp_path, monkeypatch):
    """Issue 22, case 8: Ctrl-C during the first compile kills the compiler's process group; a
    SIGKILL of npembed takes the compiler with it, and the next build removes the temporary
    folder left behind."""
    cache, slow = tmp_path / "cache", _slow_compiler(tmp_path)
    for stop in (lambda process: process.send_signal(signal.SIGINT), lambda process: process.kill()):
        (tmp_path / "compiler.pid").unlink(missing_ok=True)
        loader = _load_in(cache, str(slow))
        compiler = _wait_for(tmp_path / "compiler.pid")
        stop(loader)
        loader.communicate(timeout=60)
        assert _gone(compiler), "the compiler outlived npembed"
    (key_dir,) = {path.parent for path in cache.glob("native/*/build-*")}    # left by the SIGKILL
    target = key_dir / "module.so"
    monkeypatch.setattr(native, "_compile", lambda compiler, target: target.write_bytes(b"built"))
    native._build_locked([str(slow)], target)                   # the next build of that key
    assert not list(key_dir.glob("build-*")) and target.read_bytes() == b"built"
