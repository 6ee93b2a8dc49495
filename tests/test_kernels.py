import numpy as np

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
