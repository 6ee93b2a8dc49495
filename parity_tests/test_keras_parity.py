"""npembed against the Keras 3 twin: forward, loss, gradients, Adam, training runs, metrics.

Same weights (copied with set_weights), same real subword batches, masked and unmasked, float32
and float64.  Tolerances: parity_tests/tolerances.py and docs/parity.md.
"""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed import kernels, keras_twin

from parity_tests import tolerances

MASKS = [False, True]


def assert_close(actual, expected, dtype, kind, what=""):
    tol = tolerances.get(dtype, kind)
    np.testing.assert_allclose(actual, expected, rtol=tol.rtol, atol=tol.atol_for(expected),
                               err_msg=f"{what} ({kind}: {tol.why})")


def models(dtype, mask_zero, seed=0):
    np_model = npembed.tutorial_model(seed=seed, mask_zero=mask_zero, dtype=dtype)
    return np_model, keras_twin.build(np_model)


def sample_batches(real_batches, edge_batches):
    picked = {f"real_{i}": real_batches[i] for i in (0, 1, 57)}
    picked.update(edge_batches)
    return picked


@pytest.mark.parametrize("mask_zero", MASKS)
def test_forward_every_layer(dtype, mask_zero, real_batches, edge_batches):
    """Each npembed layer, fed the *Keras* input of that layer, gives Keras's output: every
    tolerance then covers one layer's own rounding, not what earlier layers passed on."""
    np_model, twin = models(dtype, mask_zero)
    for name, (ids, _) in sample_batches(real_batches, edge_batches).items():
        expected = keras_twin.forward(twin, ids)
        layer_input, mask = ids, None
        for layer in np_model.layers:
            out = layer.forward(layer_input, mask)
            assert out.dtype == np.dtype(dtype)
            if layer.name.startswith("global_average"):
                # A float32 sum of L terms may differ by L * 2**-24 of the largest term (the
                # recursive-summation bound): TensorFlow's reduction, not npembed's (float64
                # accumulation, see test_pooling_is_correctly_rounded), is the inexact one.
                bound = ids.shape[1] * np.finfo(dtype).eps / 2 * np.abs(layer_input).max()
                np.testing.assert_allclose(out, expected[layer.name], rtol=0, atol=bound,
                                           err_msg=f"{name}/{layer.name}")
            else:
                assert_close(out, expected[layer.name], dtype, layer.name, f"{name}/{layer.name}")
            mask = layer.compute_mask(layer_input, mask)
            layer_input = expected[layer.name]


@pytest.mark.parametrize("mask_zero", MASKS)
def test_pooling_is_correctly_rounded(mask_zero, real_batches, edge_batches):
    """npembed's float32 average is within one ulp of the exact (float64) average."""
    np_model = npembed.tutorial_model(seed=0, mask_zero=mask_zero)
    table = np_model.get_weights()[0].astype(np.float64)
    for name, (ids, _) in sample_batches(real_batches, edge_batches).items():
        embedded = np_model.layers[0].forward(ids)
        mask = ids != 0 if mask_zero else None
        pooled = np_model.layers[1].forward(embedded, mask)
        weights = (mask if mask_zero else np.ones(ids.shape)).astype(np.float64)
        exact = np.einsum("bt,btd->bd", weights, table[ids]) / weights.sum(axis=1, keepdims=True)
        assert np.all(np.abs(pooled - exact) <= np.spacing(np.abs(pooled).astype(np.float32))), name


@pytest.mark.parametrize("mask_zero", MASKS)
def test_loss_and_every_gradient(dtype, mask_zero, real_batches, edge_batches):
    np_model, twin = models(dtype, mask_zero)
    for name, (ids, labels) in sample_batches(real_batches, edge_batches).items():
        keras_loss, keras_grads = keras_twin.gradients(twin, ids, labels)
        loss, grads = np_model.compute_gradients(ids, labels)
        assert_close(loss, keras_loss, dtype, "loss", name)
        slices = np_model.layers[0].sparse_grads["embeddings"]
        # Embedding rows: TensorFlow sums a row's slices one by one in the weights' dtype, so
        # it may be off by (number of slices) * eps/2 * (sum of |slices|), the recursive-summation
        # bound; npembed sums in float64 (kernels.scatter_add_rows).  The padding row, with
        # thousands of slices, is where this shows (about 1e-4 of its size in float32).
        n_slices = np.bincount(slices.indices, minlength=slices.dense_shape[0])[:, None]
        abs_sum = kernels.scatter_add_rows(slices.indices, np.abs(slices.values).astype(np.float64),
                                           slices.dense_shape[0])
        row_bound = n_slices * np.finfo(dtype).eps / 2 * abs_sum
        keras_table_grad = keras_twin.to_numpy(keras_grads[0])
        assert np.all(np.abs(grads[0] - keras_table_grad) <= row_bound + tolerances.get(dtype, "grad").atol), name
        for weight_name, grad, keras_grad in zip(np_model.weight_names[1:], grads[1:], keras_grads[1:]):
            assert_close(grad, keras_twin.to_numpy(keras_grad), dtype, "grad", f"{name}/{weight_name}")
        # The embedding's gradient as TensorFlow's IndexedSlices, slice by slice.
        np.testing.assert_array_equal(slices.indices, keras_grads[0].indices.numpy())
        assert_close(slices.values, keras_grads[0].values.numpy(), dtype, "slices", name)


@pytest.mark.parametrize("mask_zero", MASKS)
def test_one_adam_step_weights_and_moments(dtype, mask_zero, real_batches):
    import keras
    np_model, twin = models(dtype, mask_zero)
    np_model.compile(optimizer=npembed.optimizers.Adam())
    optimizer = keras.optimizers.Adam()
    for ids, labels in real_batches[:3]:
        _, keras_grads = keras_twin.gradients(twin, ids, labels)
        optimizer.apply_gradients(zip(keras_grads, twin.trainable_variables))
        np_model.train_on_batch(ids, labels)
        for name, w, kw in zip(np_model.weight_names, np_model.get_weights(), twin.get_weights()):
            assert_close(w, kw, dtype, "adam_weights", name)
        keras_m, keras_v = keras_twin.adam_slots(optimizer)
        for name, m, km, v, kv in zip(np_model.weight_names, np_model.optimizer.momentums, keras_m,
                                      np_model.optimizer.velocities, keras_v):
            assert_close(m, km, dtype, "adam_moments", f"m {name}")
            assert_close(v, kv, dtype, "adam_moments", f"v {name}")
        # Start the next step from Keras's exact state, so float32 steps are compared one at a
        # time (a long float32 trajectory can split at a ReLU kink: see docs/parity.md).
        np_model.set_weights(twin.get_weights())
        np_model.optimizer.momentums = [m.copy() for m in keras_m]
        np_model.optimizer.velocities = [v.copy() for v in keras_v]
    assert optimizer.iterations.numpy() == np_model.optimizer.iterations == 3


def test_textbook_adam_is_not_keras(real_batches):
    """The squared-slices second moment matters: the textbook g**2 form differs after one step
    on a batch with repeated tokens (why it is a named, non-default variant)."""
    import keras
    keras.config.set_floatx("float64")
    try:
        np_model, twin = models("float64", False)
        np_model.compile(optimizer=npembed.optimizers.Adam(variant="textbook"))
        ids, labels = real_batches[0]
        _, keras_grads = keras_twin.gradients(twin, ids, labels)
        optimizer = keras.optimizers.Adam()
        optimizer.apply_gradients(zip(keras_grads, twin.trainable_variables))
        np_model.train_on_batch(ids, labels)
        _, keras_v = keras_twin.adam_slots(optimizer)
        assert np.abs(np_model.optimizer.velocities[0] - keras_v[0]).max() > 1e-12
    finally:
        keras.config.set_floatx("float32")


@pytest.mark.parametrize("mask_zero", MASKS)
def test_float64_training_trajectory_200_steps(mask_zero, real_batches):
    """200 Adam steps on real batches with train_on_batch: every step's loss and the final
    weights agree in float64 (where no ReLU kink can split the runs)."""
    import keras
    keras.config.set_floatx("float64")
    try:
        np_model, twin = models("float64", mask_zero, seed=1)
        np_model.compile(optimizer=npembed.optimizers.Adam())
        twin.compile(optimizer=keras.optimizers.Adam(),
                     loss=keras.losses.BinaryCrossentropy(from_logits=True))
        np_losses, keras_losses = [], []
        for ids, labels in real_batches[:200]:
            keras_losses.append(float(twin.train_on_batch(ids, labels.astype("float64"))))
            np_losses.append(np_model.train_on_batch(ids, labels))
        assert_close(np_losses, keras_losses, "float64", "trajectory_loss", "per-step loss")
        assert np.mean(np_losses[-50:]) < np.mean(np_losses[:50])      # it is learning
        for name, w, kw in zip(np_model.weight_names, np_model.get_weights(), twin.get_weights()):
            assert_close(w, kw, "float64", "trajectory_weights", name)
    finally:
        keras.config.set_floatx("float32")


def test_npembed_grads_prints_keras_beside_npembed(imdb, capsys, monkeypatch):
    from npembed import cli
    monkeypatch.setenv("NPEMBED_DATA", str(imdb.source.path))
    assert cli.main(["grads", "--batch", "5"]) == 0
    out = capsys.readouterr().out
    assert "npembed / Keras / max |difference|" in out
    loss_line = next(line for line in out.splitlines() if "loss: npembed" in line)
    ours, theirs = float(loss_line.split()[2]), float(loss_line.split()[4])
    assert ours == pytest.approx(theirs, rel=1e-6)
