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


@pytest.mark.parametrize("label", [0, 1])
def test_float32_gradient_keeps_its_digits_for_confident_predictions(label):
    """A confident, correct prediction has a tiny gradient, and float32 must keep its digits:
    written as ``sigmoid(z) - y`` it cancels (z = 17.5, y = 1 gives exactly 0; z = 12 is 0.9%
    off).  Every float32 entry is within 4 ulps of the float64 value, correct and wrong
    predictions, |z| up to 80."""
    sign = 1 if label == 1 else -1
    z64 = sign * np.concatenate([np.linspace(-80, 80, 161), [12.0, 17.5, 30.0]])[:, None]
    y = np.full(len(z64), label)
    expected = BinaryCrossentropy().gradient(y, z64)
    got = BinaryCrossentropy().gradient(y, z64.astype(np.float32))
    assert got.dtype == np.float32
    ulps = np.abs(got - expected) / np.spacing(np.abs(expected).astype(np.float32))
    assert ulps.max() <= 4
    # the cases that cancel in the naive form: nonzero, and right to a few ulps
    confident = np.abs(z64[:, 0]) >= 12
    assert np.all(got[confident & (sign * z64[:, 0] > 0)] != 0)


def test_float64_reference_itself_matches_the_closed_form():
    """The float64 reference of the test above, checked against ``exp(-|z|) / (1 + exp(-|z|))``
    (the size of a confident gradient) so that the float32 test compares with the right thing."""
    z = np.array([[12.0], [17.5], [30.0]])
    grad = BinaryCrossentropy().gradient(np.ones(3), z)[:, 0] * 3
    np.testing.assert_allclose(grad, -np.exp(-z[:, 0]) / (1 + np.exp(-z[:, 0])), rtol=1e-15)
