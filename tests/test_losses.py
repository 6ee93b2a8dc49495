import numpy as np
import pytest

from npembed.gradcheck import numerical_input_gradient, rel_error
from npembed.losses import BinaryCrossentropy, sigmoid


def test_matches_the_textbook_formula_for_moderate_logits():
    z = np.array([[-3.0], [-0.5], [0.0], [0.7], [4.0]])
    y = np.array([0, 1, 1, 0, 1])
    p = 1 / (1 + np.exp(-z[:, 0]))
    expected = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert BinaryCrossentropy()(y, z) == pytest.approx(expected, rel=1e-12)


def test_stable_for_huge_logits():
    z = np.array([[1000.0], [-1000.0], [1000.0]], dtype=np.float32)
    y = np.array([1, 0, 0])
    loss = BinaryCrossentropy()(y, z)
    assert loss == pytest.approx(1000.0 / 3)
    grad = BinaryCrossentropy().gradient(y, z)
    np.testing.assert_allclose(grad[:, 0], [0, 0, 1 / 3], atol=1e-7)
    assert np.all(np.isfinite(sigmoid(np.array([-1e4, 1e4]))))


def test_gradient_is_sigmoid_minus_label_over_batch():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(8, 1)) * 3
    y = rng.integers(0, 2, 8)
    loss = BinaryCrossentropy()
    grad = loss.gradient(y, z)
    np.testing.assert_allclose(grad[:, 0], (1 / (1 + np.exp(-z[:, 0])) - y) / 8)
    numeric = numerical_input_gradient(lambda v: np.array(loss(y, v)), z, np.array(1.0))
    assert rel_error(grad, numeric) < 1e-8


def test_from_logits_false_is_refused():
    with pytest.raises(ValueError, match="from_logits=True"):
        BinaryCrossentropy(from_logits=False)
