"""LSTM, Bidirectional and Dropout: float64 finite differences for every weight and the input,
masked and unmasked, on reviews that end before the padded length; the fast path against the
plain loop; Keras's masking semantics that need no Keras (parity_tests/test_lstm_parity.py has
the comparisons with both Kerases)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import npembed
from npembed import gradcheck, initializers, layers
from npembed.recurrent import LSTM, Bidirectional, lstm_step_backward, lstm_step_forward

from conftest import padded_batch_with_repeats

FD_TOLERANCE = 1e-7      # central differences, h = 1e-5, in float64: measured errors are ~1e-10
B, T, D, U = 4, 7, 3, 4
LENGTHS = np.array([7, 3, 5, 1])            # all but one end before the padded length


def make_layer(bidirectional, return_sequences, go_backwards, fast=True, seed=1):
    lstm = LSTM(U, return_sequences=return_sequences, go_backwards=go_backwards)
    layer = Bidirectional(lstm) if bidirectional else lstm
    layer.build(D, np.random.default_rng(seed), np.dtype(np.float64))
    layer.fast = fast
    return layer


def inputs(masked, lengths=LENGTHS):
    x = np.random.default_rng(0).standard_normal((len(lengths), T, D))
    mask = np.arange(T)[None, :] < lengths[:, None] if masked else None
    return x, mask


CONFIGS = list(itertools.product([False, True], [False, True], [False, True], [False, True]))
IDS = [f"{'bi' if b else 'lstm'}-{'seq' if s else 'last'}-{'back' if g else 'fwd'}-{'mask' if m else 'nomask'}"
       for b, s, g, m in CONFIGS]


@pytest.mark.parametrize("bidirectional, return_sequences, go_backwards, masked", CONFIGS, ids=IDS)
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
def test_backward_matches_finite_differences(bidirectional, return_sequences, go_backwards, masked, fast):
    """d sum(out * dout) / d(every weight entry and every input entry), central differences."""
    layer = make_layer(bidirectional, return_sequences, go_backwards, fast)
    x, mask = inputs(masked)
    out = layer.forward(x, mask)
    dout = np.random.default_rng(2).standard_normal(out.shape)
    dx = layer.backward(dout)
    grads = {key: value.copy() for key, value in layer.grads.items()}
    assert list(grads) == list(layer.params)
    f = lambda: float(np.sum(layer.forward(x, mask) * dout))  # noqa: E731
    for key, weight in layer.params.items():
        error = gradcheck.rel_error(grads[key], gradcheck.numerical_gradient(f, weight))
        assert error < FD_TOLERANCE, f"{key}: {error:.2e}"
    numeric_dx = gradcheck.numerical_input_gradient(lambda xx: layer.forward(xx, mask), x, dout)
    assert gradcheck.rel_error(dx, numeric_dx) < FD_TOLERANCE
    if masked:
        assert np.all(dx[~mask] == 0), "a masked step's input has no effect"


@pytest.mark.parametrize("bidirectional, return_sequences, go_backwards, masked", CONFIGS, ids=IDS)
def test_fast_path_equals_the_plain_loop(bidirectional, return_sequences, go_backwards, masked):
    """The same arithmetic in another order: outputs, dx and every gradient within 1e-13."""
    x, mask = inputs(masked, np.array([7, 3, 5, 0]))           # and one empty review
    results = []
    for fast in (True, False):
        layer = make_layer(bidirectional, return_sequences, go_backwards, fast)
        out = layer.forward(x, mask)
        dx = layer.backward(np.random.default_rng(2).standard_normal(out.shape))
        results.append([out, dx, *layer.grads.values()])
    for fast_value, reference in zip(*results):
        np.testing.assert_allclose(fast_value, reference, rtol=0, atol=1e-13)


def test_a_mask_with_a_hole_runs_the_plain_loop():
    """A mask that is not right-padding (a zero id inside a review) is still Keras's: the
    fast path refuses it and the plain loop runs, giving what the reference gives."""
    x, mask = inputs(True)
    mask[0, 2] = False
    fast, plain = make_layer(True, True, False, fast=True), make_layer(True, True, False, fast=False)
    np.testing.assert_array_equal(fast.forward(x, mask), plain.forward(x, mask))


def test_one_step_backward_matches_finite_differences():
    """CS231n's lstm_step_backward, alone, for x, h, c and the three weights."""
    rng = np.random.default_rng(3)
    x, h, c = rng.standard_normal((2, D)), rng.standard_normal((2, U)), rng.standard_normal((2, U))
    weights = [rng.standard_normal((D, 4 * U)), rng.standard_normal((U, 4 * U)), rng.standard_normal(4 * U)]
    dh, dc = rng.standard_normal((2, U)), rng.standard_normal((2, U))
    analytic = lstm_step_backward(dh, dc, lstm_step_forward(x, h, c, *weights)[2])

    def f():
        next_h, next_c, _ = lstm_step_forward(x, h, c, *weights)
        return float(np.sum(next_h * dh) + np.sum(next_c * dc))
    for got, array in zip(analytic, [x, h, c, *weights]):
        assert gradcheck.rel_error(got, gradcheck.numerical_gradient(f, array)) < FD_TOLERANCE


@pytest.mark.parametrize("bidirectional", [False, True])
def test_masked_output_ignores_extra_padding_unmasked_does_not(bidirectional):
    """The tutorial's pad=True/pad=False difference: without a mask, more padding changes the
    output (the LSTM runs over it); with one, a review's output is the same however it is padded."""
    x, mask = inputs(True, np.array([3]))
    short = x[:, :3]
    for masked in (True, False):
        layer = make_layer(bidirectional, False, False)
        padded = layer.forward(x, mask if masked else None)
        unpadded = layer.forward(short, mask[:, :3] if masked else None)
        if masked:
            np.testing.assert_allclose(padded, unpadded, rtol=0, atol=1e-15)
        else:
            assert np.abs(padded - unpadded).max() > 1e-3


def test_masked_steps_keep_the_state_and_bidirectional_zeroes_them():
    """Keras: a lone LSTM returning sequences repeats the last state over the padding; the
    go_backwards one outputs its zero state there first; inside Bidirectional both output 0."""
    x, mask = inputs(True)
    lone = make_layer(False, True, False)
    out = lone.forward(x, mask)
    np.testing.assert_array_equal(out[1, 3:], np.broadcast_to(out[1, 2], (T - 3, U)))
    back = make_layer(False, True, True)
    np.testing.assert_array_equal(back.forward(x, mask)[1, :T - 3], 0)
    both = make_layer(True, True, False).forward(x, mask)
    np.testing.assert_array_equal(both[1, 3:], 0)
    assert np.all(both[1, :3] != 0)


def test_weights_layout_and_initial_values():
    layer = make_layer(True, False, False)
    assert list(layer.params) == [f"{d}_lstm/{k}" for d in ("forward", "backward")
                                  for k in ("kernel", "recurrent_kernel", "bias")]
    assert layer.params["forward_lstm/kernel"].shape == (D, 4 * U)
    recurrent = layer.params["backward_lstm/recurrent_kernel"]
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(U), atol=1e-12)     # orthonormal rows
    np.testing.assert_array_equal(layer.params["forward_lstm/bias"], np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)])
    square = initializers.orthogonal((5, 5), np.random.default_rng(0), np.float64)
    np.testing.assert_allclose(square.T @ square, np.eye(5), atol=1e-12)


def stacked_model(mask_zero, vocab_size=30, seed=3):
    return npembed.Sequential([layers.Embedding(vocab_size, 4, mask_zero=mask_zero),
                               Bidirectional(LSTM(3, return_sequences=True)), Bidirectional(LSTM(2)),
                               layers.Dense(4, activation="relu"), layers.Dropout(0.5), layers.Dense(1)],
                              seed=seed, dtype="float64")


@pytest.mark.parametrize("mask_zero", [False, True])
def test_stacked_model_gradients_with_a_fixed_dropout_mask(mask_zero):
    """The tutorial's second model, small, through Sequential: every weight, finite differences
    of the training loss with one fixed dropout mask."""
    ids = padded_batch_with_repeats(np.random.default_rng(7), vocab_size=30)
    labels = np.array([1, 0, 1, 1, 0, 0])
    model = stacked_model(mask_zero)
    model.layers[4].fixed_keep = np.random.default_rng(1).random((len(ids), 4)) >= 0.5
    _, grads = model.compute_gradients(ids, labels)
    loss = lambda: model.loss(labels, model.forward(ids, training=True))  # noqa: E731
    for name, weight, grad in zip(model.weight_names, model.weights, grads):
        rows = np.unique(ids) if name.endswith("embeddings") else range(weight.shape[0])
        numeric = gradcheck.numerical_gradient(loss, weight, [(r, *rest) for r in rows
                                                              for rest in np.ndindex(weight.shape[1:])])
        picked = grad[rows] if name.endswith("embeddings") else grad
        assert gradcheck.rel_error(picked, numeric[rows] if name.endswith("embeddings") else numeric) < FD_TOLERANCE, name


def test_real_reviews_bidirectional_gradients(imdb):
    """Real subword reviews of different lengths, masked: every LSTM weight of the tutorial's
    model (narrowed), 30 entries each, against finite differences."""
    rows = np.nonzero((imdb.train.lengths > 10) & (imdb.train.lengths < 40))[0][:4]
    ids, labels = imdb.train.padded(rows), imdb.train.labels[rows]
    model = npembed.Sequential([layers.Embedding(8185, 4, mask_zero=True), Bidirectional(LSTM(3)),
                                layers.Dense(4, activation="relu"), layers.Dense(1)], seed=0, dtype="float64")
    errors = gradcheck.check_model_gradients(model, ids, labels, entries_per_weight=30)
    assert max(errors.values()) < FD_TOLERANCE, errors


def test_dropout():
    """Identity at inference; while training, x * 2 * keep for rate 0.5, about half kept, the
    same draws for the same seed; backward uses the same mask."""
    x = np.random.default_rng(0).standard_normal((200, 50))
    drop = layers.Dropout(0.5, seed=4)
    assert drop.forward(x) is x and drop.backward(x) is x
    drop.training = True
    out = drop.forward(x)
    kept = out != 0
    assert 0.45 < kept.mean() < 0.55
    np.testing.assert_array_equal(out[kept], 2 * x[kept])
    np.testing.assert_array_equal(drop.backward(np.ones_like(x)), 2.0 * kept)
    again = layers.Dropout(0.5, seed=4)
    again.training = True
    np.testing.assert_array_equal(again.forward(x), out)
    with pytest.raises(ValueError, match="rate in"):
        layers.Dropout(1.0)


def test_sequential_checks_ranks_through_output_shape():
    npembed.Sequential([layers.Embedding(30, 4), Bidirectional(LSTM(3)), layers.Dense(1)], seed=0)
    with pytest.raises(ValueError, match="rank"):
        npembed.Sequential([layers.Embedding(30, 4), LSTM(3, return_sequences=True), layers.Dense(1)], seed=0)


def test_training_on_real_batches_lowers_the_loss(imdb):
    """A few Adam steps of a narrow Bidirectional LSTM on the same real batch: it learns."""
    rows = np.nonzero(imdb.train.lengths < 60)[0][:16]
    ids, labels = imdb.train.padded(rows), imdb.train.labels[rows]
    model = npembed.Sequential([layers.Embedding(8185, 8, mask_zero=True), Bidirectional(LSTM(8)),
                                layers.Dense(8, activation="relu"), layers.Dense(1)], seed=0)
    model.compile(optimizer=npembed.optimizers.Adam(1e-2))
    losses = [model.train_on_batch(ids, labels) for _ in range(15)]
    assert losses[-1] < 0.65 * losses[0]


@pytest.mark.parametrize("masked", [False, True])
def test_float32_stays_float32(masked):
    """No silent float64 anywhere in the fast path (a float64 constant once made the whole
    recurrence run in float64, 2.5 times slower): output, dx and every gradient in float32."""
    lstm = LSTM(U, return_sequences=True)
    layer = Bidirectional(lstm)
    layer.build(D, np.random.default_rng(1), np.dtype(np.float32))
    x, mask = inputs(masked)
    out = layer.forward(x.astype(np.float32), mask)
    dx = layer.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in layer.grads.values())


def test_a_resumed_run_draws_the_dropout_masks_an_uninterrupted_one_would(tmp_path):
    """Each training forward's keep mask is a pure function of (seed, draw count), and a
    checkpoint saves the count: two steps, a checkpoint, two more steps give the same weights
    as four steps without a stop (with a drawing stream that was not saved, they differed)."""
    from npembed.checkpoint import load_checkpoint, save_checkpoint

    def model():
        m = npembed.Sequential([layers.Embedding(12, 4), layers.GlobalAveragePooling1D(), layers.Dense(6, "relu"),
                                layers.Dropout(0.5), layers.Dense(1)], seed=3, dtype="float64")
        m.compile(optimizer=npembed.optimizers.Adam(0.05))
        return m
    ids, labels = padded_batch_with_repeats(np.random.default_rng(0), 12, batch=5, max_len=7), np.array([1, 0, 1, 1, 0])
    straight = model()
    for _ in range(4):
        straight.train_on_batch(ids, labels)
    first = model()
    for _ in range(2):
        first.train_on_batch(ids, labels)
    save_checkpoint(tmp_path / "c.npz", first, {"epoch": 1, "history": {}})
    resumed = model()
    state, _ = load_checkpoint(tmp_path / "c.npz", resumed)
    assert state["layer_state"] == {"dropout": {"draws": 2}} and resumed.layers[3].draws == 2
    for _ in range(2):
        resumed.train_on_batch(ids, labels)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
