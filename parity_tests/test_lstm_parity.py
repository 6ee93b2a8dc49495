"""The RNN tutorial's models against both Kerases, on real subword batches.

Models: ``Embedding(8185, 64) -> Bidirectional(LSTM(64)) -> Dense(64, relu) -> Dense(1)`` (the
tutorial's) and the stacked one (``Bidirectional(LSTM(64, return_sequences=True)) ->
Bidirectional(LSTM(32)) -> Dense(64, relu) -> Dropout(0.5) -> Dense(1)``), masked and unmasked,
fresh and trained weights, copied into each Keras's twin with ``set_weights``.

Batches: the tutorial's pipeline (``shuffle(10000).padded_batch(64)``, seed 0) cut short to
keep the suite fast: from each batch of 64 its 8 shortest reviews, padded to the longest of the
8, so reviews end before the padded length and the recurrence still runs ~100 steps.

- float64: loss and every gradient, normwise within 1e-12 (measured: at most ~1e-13); Adam
  trajectories with each Keras's own Adam, losses and weights within 1e-12.
- float32: the Bidirectional layer's output, fed Keras's embedding output, within twice the
  first-order rounding bound of parity_tests/lstm_bounds.py (its docstring: how the error
  grows with the number of steps); the Dense layers within parity_tests/bounds.py's bounds.
  Gradients in float32 have no a-priori bound here (BPTT's would need second derivatives):
  they are held to being as accurate as Keras's own, both measured against float64.
"""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed import keras_twin, layers
from npembed.recurrent import LSTM, Bidirectional

from parity_tests import bounds, lstm_bounds, lstm_twin

MASKS = [False, True]
FLOAT64_GRADIENT = 1e-12       # normwise relative; float64 rounds at 1.1e-16, measured <= 1e-13
FLOAT64_TRAJECTORY = 1e-12     # the requirement, as for the tutorial's model


def rnn_model(mask_zero, dtype="float64", stacked=False, seed=0):
    stack = [layers.Embedding(8185, 64, mask_zero=mask_zero)]
    if stacked:
        stack += [Bidirectional(LSTM(64, return_sequences=True)), Bidirectional(LSTM(32)),
                  layers.Dense(64, activation="relu"), layers.Dropout(0.5), layers.Dense(1)]
    else:
        stack += [Bidirectional(LSTM(64)), layers.Dense(64, activation="relu"), layers.Dense(1)]
    return npembed.Sequential(stack, seed=seed, dtype=dtype)


@pytest.fixture(scope="session")
def short_batches(imdb):
    """20 short real batches of 8 (see the module docstring)."""
    train = imdb.train
    order = train.batches(64, shuffle_buffer=10000, seed=0).order(0)
    picked = []
    for begin in range(0, 20 * 64, 64):
        rows = order[begin:begin + 64]
        rows = rows[np.argsort(train.lengths[rows], kind="stable")[:8]]
        picked.append((train.padded(rows), train.labels[rows].astype(np.int64)))
    return picked


@pytest.fixture(scope="session")
def trained_rnn_weights(short_batches):
    """Weights after 40 float32 Adam(1e-2) steps on the short batches, masked and unmasked:
    moved well away from the initialisation (the gates no longer near their start)."""
    weights = {}
    for mask_zero in MASKS:
        model = rnn_model(mask_zero, "float32", seed=1)
        model.compile(optimizer=npembed.optimizers.Adam(1e-2))
        for ids, labels in short_batches * 2:
            model.train_on_batch(ids, labels)
        weights[mask_zero] = model.get_weights()
    return weights


def _normwise(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("mask_zero", MASKS)
@pytest.mark.parametrize("weights_kind", ["fresh", "trained"])
def test_float64_loss_and_every_gradient(flavor, mask_zero, weights_kind, float64_keras, short_batches,
                                         trained_rnn_weights):
    model = rnn_model(mask_zero)
    if weights_kind == "trained":
        model.set_weights(trained_rnn_weights[mask_zero])
    twin = lstm_twin.build(model, flavor)
    for ids, labels in short_batches[:2]:
        outputs = keras_twin.forward(twin, ids)
        mine = model.forward(ids)
        np.testing.assert_allclose(mine, outputs[model.layers[-1].name], rtol=1e-12, atol=0)
        _assert_float64_loss_and_gradients(model, twin, ids, labels, True, flavor)


def _assert_float64_loss_and_gradients(model, twin, ids, labels, training: bool, flavor: str) -> None:
    """npembed's float64 loss within 1e-13 of Keras's and every weight's gradient within
    FLOAT64_GRADIENT of it, normwise."""
    keras_loss, keras_grads = lstm_twin.gradients(twin, ids, labels, training=training)
    loss, grads = lstm_twin.np_gradients(model, ids, labels, training=training)
    assert abs(loss - keras_loss) <= 1e-13 * abs(keras_loss)
    for name, grad, keras_grad in zip(model.weight_names, grads, keras_grads):
        assert _normwise(grad, keras_grad) < FLOAT64_GRADIENT, f"{flavor}: {name}"


@pytest.mark.parametrize("mask_zero", MASKS)
@pytest.mark.parametrize("dropout", ["inference", "fixed mask"])
def test_float64_stacked_model(flavor, mask_zero, dropout, float64_keras, short_batches):
    """The stacked model: the first Bidirectional returns sequences (zeros at masked steps, as
    Keras forces), the second reads them with the mask passed on.  Dropout compared in
    inference mode, and in training mode under the same fixed mask."""
    model = rnn_model(mask_zero, stacked=True)
    ids, labels = short_batches[0]
    training = dropout == "fixed mask"
    if training:
        model.layers[-2].fixed_keep = np.random.default_rng(0).random((len(ids), 64)) >= 0.5
    twin = lstm_twin.build(model, flavor)
    outputs = keras_twin.forward(twin, ids)
    layer_input, mask = ids, None
    for layer in model.layers[:3]:
        out = layer.forward(layer_input, mask)
        np.testing.assert_allclose(out, outputs[layer.name], rtol=0, atol=1e-13, err_msg=layer.name)
        mask, layer_input = layer.compute_mask(layer_input, mask), out
    _assert_float64_loss_and_gradients(model, twin, ids, labels, training, flavor)


@pytest.mark.parametrize("mask_zero", MASKS)
def test_float64_adam_trajectory(flavor, mask_zero, float64_keras, short_batches):
    """20 train_on_batch steps, each Keras with its own Adam(1e-3) and npembed with the Adam
    variant that reproduces it: every step's loss and the final weights within 1e-12."""
    model = rnn_model(mask_zero, seed=2)
    model.compile(optimizer=npembed.optimizers.Adam(1e-3, variant=keras_twin.ADAM_VARIANT[flavor]))
    twin = lstm_twin.build(model, flavor)
    twin.compile(optimizer=keras_twin.adam(twin, learning_rate=1e-3), loss=keras_twin.loss_function(twin))
    mine, theirs, start = [], [], model.get_weights()
    for ids, labels in short_batches:
        theirs.append(float(twin.train_on_batch(ids, labels.astype("float64"))))
        mine.append(model.train_on_batch(ids, labels))
    np.testing.assert_allclose(mine, theirs, rtol=FLOAT64_TRAJECTORY, atol=0)
    for name, w, kw, w0 in zip(model.weight_names, model.get_weights(), twin.get_weights(), start):
        np.testing.assert_allclose(w, kw, rtol=0, atol=FLOAT64_TRAJECTORY, err_msg=name)
        assert np.abs(w - w0).max() > 1e-3, f"{name} must have moved"


@pytest.mark.parametrize("mask_zero", MASKS)
@pytest.mark.parametrize("weights_kind", ["fresh", "trained"])
def test_float32_forward_within_the_rounding_bound(flavor, mask_zero, weights_kind, short_batches,
                                                   trained_rnn_weights):
    """Each layer fed Keras's input of that layer: the Bidirectional output within twice the
    first-order bound of lstm_bounds (both sides within it of the exact value), the Dense
    layers within bounds.py's."""
    model = rnn_model(mask_zero, "float32")
    if weights_kind == "trained":
        model.set_weights(trained_rnn_weights[mask_zero])
    twin = lstm_twin.build(model, flavor)
    u = bounds.unit_roundoff("float32")
    embedding, bidirectional, *dense = model.layers
    for ids, _ in short_batches[:2]:
        expected = keras_twin.forward(twin, ids)
        x = expected[embedding.name]
        mask = ids != 0 if mask_zero else None
        out = bidirectional.forward(x, mask)
        for half, sub in enumerate(bidirectional.layers):
            xs = x[:, ::-1] if sub.go_backwards else x
            ms = None if mask is None else (mask[:, ::-1] if sub.go_backwards else mask)
            _, bound = lstm_bounds.final_state_bound(xs, *sub.weights_tuple(), ms, u)
            units = slice(half * sub.units, (half + 1) * sub.units)
            bounds.assert_within(out[:, units], expected[bidirectional.name][:, units], bound,
                                 f"{flavor} {sub.name}")
        layer_input = expected[bidirectional.name]
        for layer in dense:
            kernel, bias = (bounds.exact(layer.params[key]) for key in ("kernel", "bias"))
            bound = bounds.add_bias(bounds.matmul(bounds.exact(layer_input), kernel, u), bias, u).error
            bounds.assert_within(layer.forward(layer_input), expected[layer.name], bound, f"{flavor} {layer.name}")
            layer_input = expected[layer.name]


def test_float32_bound_growth_with_steps(imdb):
    """How the bound grows with the number of steps, on the 4 longest real reviews, unmasked
    (the tutorial's model reads the padding), fresh weights, in the norm of the final state:
    ||bound_b|| / ||h_b|| / u measured 0.74-0.96e4 at 10 steps, 0.96-1.3e4 at 100 and
    1.1-1.6e4 at 1,000: the LSTM contracts (forget gates below 1), so the local errors of early
    steps fade and the bound is about flat in T instead of growing with it.  Not vacuous either:
    below 1% of the state's norm."""
    model = rnn_model(False, "float32")
    sub = model.layers[1].forward_layer
    rows = np.argsort(imdb.train.lengths)[-4:]
    x = model.layers[0].forward(imdb.train.padded(rows))
    u = bounds.unit_roundoff("float32")
    growth = []
    for steps in (10, 100, 1000):
        value, bound = lstm_bounds.final_state_bound(x[:, :steps], *sub.weights_tuple(), None, u)
        growth.append(float(np.max(np.linalg.norm(bound, axis=1) / np.linalg.norm(value, axis=1))) / u)
    assert max(growth) * u < 0.01, growth
    assert growth[2] < 3 * growth[0], f"||bound|| / ||h|| / u at 10, 100, 1000 steps: {growth}"


@pytest.mark.parametrize("mask_zero", MASKS)
def test_float32_gradients_as_accurate_as_keras(flavor, mask_zero, short_batches, float64_keras):
    """float32 gradients have no a-priori bound here: each weight's gradient is held to be as
    close to the float64 gradient (exact to ~1e-13) as Keras's float32 gradient is, within a
    factor 4, plus 16 u of its norm."""
    ids, labels = short_batches[0]
    reference = rnn_model(mask_zero, "float64")
    _, exact = lstm_twin.np_gradients(reference, ids, labels, training=True)
    model = rnn_model(mask_zero, "float32")
    keras_twin.set_floatx(flavor, "float32")
    try:
        twin = lstm_twin.build(model, flavor)
        _, keras_grads = lstm_twin.gradients(twin, ids, labels, training=True)
    finally:
        keras_twin.set_floatx(flavor, "float64")
    _, grads = lstm_twin.np_gradients(model, ids, labels, training=True)
    u = bounds.unit_roundoff("float32")
    for name, grad, keras_grad, g64 in zip(model.weight_names, grads, keras_grads, exact):
        ours, theirs = _normwise(grad, g64), _normwise(keras_grad, g64)
        assert ours <= 4 * theirs + 16 * u, f"{flavor} {name}: npembed {ours:.2e}, Keras {theirs:.2e}"
