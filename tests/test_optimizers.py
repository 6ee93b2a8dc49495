"""Adam: the update rule, the two Kerases' second moments (keras2 and keras3), and lazy."""
import numpy as np
import pytest

from npembed import kernels
from npembed.optimizers import Adam, adam_update
from npembed.sparse import IndexedSlices


def test_one_step_by_hand_float64():
    """The first step of Adam moves every weight by about lr * sign(g)."""
    w = np.array([1.0, -2.0, 3.0])
    g = np.array([0.5, -0.1, 0.0])
    opt = Adam(learning_rate=0.1)
    opt.apply_gradients([g], [w])
    b1, b2 = np.float64(np.float32(0.9)), np.float64(np.float32(0.999))
    lr = 0.1
    m, v = g * (1 - 0.9), g ** 2 * (1 - 0.999)
    alpha = lr * np.sqrt(1 - b2) / (1 - b1)
    expected = np.array([1.0, -2.0, 3.0]) - m * alpha / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(w, [0.9, -1.9, 3.0], atol=1e-5)
    assert opt.iterations == 1


def test_bias_correction_uses_float32_betas_even_in_float64():
    opt = Adam()
    alpha = opt.step_size(np.dtype(np.float64))
    exact_betas = 0.001 * np.sqrt(1 - 0.999) / (1 - 0.9)
    assert alpha != exact_betas
    b1, b2 = np.float64(np.float32(0.9)), np.float64(np.float32(0.999))
    assert alpha == 0.001 * np.sqrt(1 - b2) / (1 - b1)


def test_fast_kernel_equals_reference_bit_for_bit(kernel_backend):
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        state = [rng.normal(size=(50, 4)).astype(dtype) for _ in range(3)]
        state[2] = np.abs(state[2])
        grad = rng.normal(size=(50, 4)).astype(dtype)
        squared = np.abs(rng.normal(size=(50, 4))).astype(dtype)
        args = (dtype(0.01), dtype(0.1), dtype(0.001), dtype(1e-7))
        for sq in (None, squared):
            ref = [a.copy() for a in state]
            fast = [a.copy() for a in state]
            adam_update(*ref, grad, np.square(grad) if sq is None else sq, *args)
            kernels.adam_update(*fast, grad, sq, *args)
            for a, b in zip(ref, fast):
                np.testing.assert_array_equal(a, b)


def sparse_grad():
    # Row 2 looked up twice, row 0 (padding) once, rows 1 and 3 never.
    return IndexedSlices(values=np.array([[0.3, -0.1], [0.2, 0.4], [-0.5, 0.1]]),
                         indices=np.array([2, 2, 0]), dense_shape=(4, 2))


def test_keras3_squares_each_slice_before_summing():
    table = np.ones((4, 2))
    opt = Adam(variant="keras3")
    opt.apply_gradients([sparse_grad()], [table])
    np.testing.assert_allclose(opt.momentums[0][2], 0.1 * np.array([0.5, 0.3]))
    np.testing.assert_allclose(opt.velocities[0][2], (1 - 0.999) * np.array([0.09 + 0.04, 0.01 + 0.16]))


def test_keras2_the_default_squares_the_summed_gradient():
    table = np.ones((4, 2))
    opt = Adam()
    assert opt.variant == "keras2"
    opt.apply_gradients([sparse_grad()], [table])
    np.testing.assert_allclose(opt.momentums[0][2], 0.1 * np.array([0.5, 0.3]))
    np.testing.assert_allclose(opt.velocities[0][2], (1 - 0.999) * np.array([0.25, 0.09]))


def test_keras2_on_slices_equals_adam_on_the_dense_gradient():
    """Keras 2 sums duplicate slices first, so its Adam on IndexedSlices is dense Adam on their
    scatter-sum, bit for bit (float64, three steps)."""
    sparse_table, dense_table = np.ones((4, 2)), np.ones((4, 2))
    sparse_opt, dense_opt = Adam(), Adam()
    for _ in range(3):
        sparse_opt.apply_gradients([sparse_grad()], [sparse_table])
        dense_opt.apply_gradients([sparse_grad().to_dense()], [dense_table])
    np.testing.assert_array_equal(sparse_table, dense_table)
    np.testing.assert_array_equal(sparse_opt.velocities[0], dense_opt.velocities[0])


@pytest.mark.parametrize("old", ["textbook", "keras"])
def test_old_variant_names_are_refused(old):
    with pytest.raises(ValueError, match="variant must be one of"):
        Adam(variant=old)


@pytest.mark.parametrize("variant", ["keras2", "keras3"])
def test_every_row_moves_every_step(variant):
    table = np.ones((4, 2))
    opt = Adam(variant=variant)
    opt.apply_gradients([sparse_grad()], [table])
    before = table.copy()
    opt.apply_gradients([IndexedSlices(np.array([[1.0, 1.0]]), np.array([0]), (4, 2))], [table])
    assert np.all(table[2] != before[2])          # row 2 keeps moving on its momentum
    np.testing.assert_array_equal(table[[1, 3]], 1.0)   # never-seen rows have m = 0


def test_lazy_variant_freezes_rows_outside_the_batch():
    table = np.ones((4, 2))
    opt = Adam(variant="lazy")
    opt.apply_gradients([sparse_grad()], [table])
    before, m_before = table.copy(), opt.momentums[0].copy()
    opt.apply_gradients([IndexedSlices(np.array([[1.0, 1.0]]), np.array([0]), (4, 2))], [table])
    np.testing.assert_array_equal(table[2], before[2])
    np.testing.assert_array_equal(opt.momentums[0][2], m_before[2])
    assert np.all(table[0] != before[0])


def test_lazy_equals_keras2_on_the_first_step():
    """Before any row has a moment to decay, lazy and dense Adam take the same step."""
    keras2_table, lazy_table = np.ones((4, 2)), np.ones((4, 2))
    Adam().apply_gradients([sparse_grad()], [keras2_table])
    Adam(variant="lazy").apply_gradients([sparse_grad()], [lazy_table])
    np.testing.assert_array_equal(keras2_table, lazy_table)


def test_state_round_trip_resumes_identically():
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(3,)) for _ in range(4)]
    w1 = np.zeros(3)
    opt1 = Adam()
    for g in grads:
        opt1.apply_gradients([g], [w1])
    w2 = np.zeros(3)
    opt2 = Adam()
    for g in grads[:2]:
        opt2.apply_gradients([g], [w2])
    opt3 = Adam()
    opt3.load_state(opt2.state(), [w2])
    for g in grads[2:]:
        opt3.apply_gradients([g], [w2])
    np.testing.assert_array_equal(w1, w2)


@pytest.mark.parametrize("kwargs, message", [
    ({"variant": "adamw"}, "variant must be one of"),
    ({"learning_rate": 0}, "learning_rate must be in"),
    ({"beta_1": 1.0}, "beta_1 must be in"),
    ({"epsilon": -1.0}, "epsilon must be in"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adam(**kwargs)


def test_gradient_count_must_match():
    with pytest.raises(ValueError, match="got 1 gradients for 2 weights"):
        Adam().apply_gradients([np.zeros(2)], [np.zeros(2), np.zeros(2)])


def test_state_that_does_not_fit_is_refused_before_any_change():
    """Issue 22 item 4: one Adam trained with one model, then given weights of other shapes,
    refuses before a kernel reads its moments at the wrong shape (either order)."""
    for first, second in (((4, 3), (5, 3)), ((5, 3), (4, 3)), ((4, 3), (4, 3, 1))):
        opt, weight = Adam(), np.ones(first, dtype=np.float32)
        opt.apply_gradients([np.ones(first, dtype=np.float32)], [weight])
        other = np.ones(second, dtype=np.float32)
        with pytest.raises(ValueError, match="does not fit the weights.*its own optimizer"):
            opt.apply_gradients([np.ones(second, dtype=np.float32)], [other])
        np.testing.assert_array_equal(other, 1.0)
        assert opt.iterations == 1
    opt = Adam()
    opt.apply_gradients([np.ones(3)], [np.ones(3)])
    with pytest.raises(ValueError, match="does not fit"):           # float64 moments, float32 weight
        opt.apply_gradients([np.ones(3, np.float32)], [np.ones(3, np.float32)])


def test_load_state_checks_everything_before_keeping_any():
    opt = Adam()
    opt.apply_gradients([np.ones(3)], [np.zeros(3)])
    state = opt.state()
    assert sorted(state) == ["iterations", "m_0", "v_0"]
    fresh = Adam()
    for bad, message in (({**state, "v_0": -state["v_0"]}, "negative"),
                         ({**state, "m_0": np.ones(4)}, "shape"),
                         ({**state, "m_0": np.array([np.nan, 0, 0])}, "NaN"),
                         ({**state, "iterations": -1}, "iterations")):
        with pytest.raises(ValueError, match=message):
            fresh.load_state(bad, [np.zeros(3)])
        assert fresh.iterations == 0 and not fresh.momentums
