"""npembed against both Kerases: forward, loss, gradients, Adam steps, 200-step trajectories.

Same weights (copied with set_weights), same real subword batches (with padding and repeated
subwords), masked and unmasked, float32 and float64, fresh and trained weights, both kernel
backends, against Keras 3 (``keras3``) and the tutorial's Keras 2 (``tf_keras``), each with the
npembed Adam variant that reproduces it.  One-step comparisons use the error bounds of
parity_tests/bounds.py (they hold on any machine); long trajectories run in float64 with the
tolerances of parity_tests/tolerances.py.  docs/parity.md explains both.
"""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed import keras_twin

from parity_tests import bounds, tolerances

MASKS = [False, True]


def models(dtype, mask_zero, flavor, weights_kind="fresh", trained_weights=None, seed=0):
    """An npembed model and its twin in ``flavor``, on fresh or trained weights; the npembed
    model is compiled with the Adam that reproduces that Keras."""
    np_model = npembed.tutorial_model(seed=seed, mask_zero=mask_zero, dtype=dtype)
    if weights_kind == "trained":
        np_model.set_weights(trained_weights[mask_zero][0])
    np_model.compile(optimizer=npembed.optimizers.Adam(variant=keras_twin.ADAM_VARIANT[flavor]))
    return np_model, keras_twin.build(np_model, flavor)


def sample_batches(real_batches, edge_batches):
    picked = {f"real_{i}": real_batches[i] for i in (0, 1, 57)}
    picked.update(edge_batches)
    return picked


@pytest.mark.parametrize("mask_zero", MASKS)
def test_forward_every_layer(flavor, dtype, mask_zero, weights_kind, kernel_backend, trained_weights,
                             real_batches, edge_batches):
    """Each npembed layer, fed the *Keras* input of that layer, gives Keras's output within
    twice its own rounding bound: the layer's arithmetic alone, not what earlier layers passed on."""
    np_model, twin = models(dtype, mask_zero, flavor, weights_kind, trained_weights)
    u = bounds.unit_roundoff(dtype)
    for name, (ids, _) in sample_batches(real_batches, edge_batches).items():
        expected = keras_twin.forward(twin, ids)
        layer_input, mask = ids, None
        for layer in np_model.layers:
            out = layer.forward(layer_input, mask)
            assert out.dtype == np.dtype(dtype)
            if layer.name.startswith("embedding"):
                np.testing.assert_array_equal(out, expected[layer.name], err_msg=f"{name}: a gather is exact")
            else:
                bound = _layer_bound(layer, layer_input, mask, u)
                bounds.assert_within(out, expected[layer.name], bound, f"{flavor} {name}/{layer.name}")
            mask = layer.compute_mask(layer_input, mask)
            layer_input = expected[layer.name]


def _layer_bound(layer, layer_input, mask, u):
    """One layer's own rounding bound, its input taken as exact (bounds.py's rules)."""
    x = np.asarray(layer_input, dtype=np.float64)
    if layer.name.startswith("global_average"):
        weights = np.ones(x.shape[:2]) if mask is None else mask.astype(np.float64)
        counts = weights.sum(axis=1, keepdims=True)
        return bounds.gamma(x.shape[1] + 1, u) * np.einsum("bt,btd->bd", weights, np.abs(x)) / counts
    kernel, bias = (bounds.exact(layer.params[key]) for key in ("kernel", "bias"))
    return bounds.add_bias(bounds.matmul(bounds.exact(x), kernel, u), bias, u).error


@pytest.mark.parametrize("mask_zero", MASKS)
def test_pooling_is_correctly_rounded(mask_zero, kernel_backend, real_batches, edge_batches):
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
def test_loss_and_every_gradient(flavor, dtype, mask_zero, weights_kind, kernel_backend, trained_weights,
                                 real_batches, edge_batches):
    """Loss, dL/dlogits, all five gradients and the embedding's IndexedSlices, slice by slice,
    each within twice its error bound (bounds.model_bounds)."""
    np_model, twin = models(dtype, mask_zero, flavor, weights_kind, trained_weights)
    batches = sample_batches(real_batches, edge_batches)
    confident = 0
    for name, (ids, labels) in batches.items():
        bound = bounds.model_bounds(np_model, ids, labels, dtype)
        keras_loss, keras_grads = keras_twin.gradients(twin, ids, labels)
        loss, grads = np_model.compute_gradients(ids, labels)
        confident += int(np.sum(np.abs(bound.outputs[np_model.layers[-1].name].value) > 15))
        bounds.assert_within(loss, keras_loss, bound.loss.error, f"{flavor} {name}: loss")
        for weight_name, grad, keras_grad, grad_bound in zip(np_model.weight_names, grads, keras_grads,
                                                             bound.grads):
            bounds.assert_within(grad, keras_twin.to_numpy(keras_grad), grad_bound.error,
                                 f"{flavor} {name}: gradient of {weight_name}")
        slices = np_model.layers[0].grads["embeddings"]
        np.testing.assert_array_equal(slices.indices, keras_grads[0].indices.numpy())
        bounds.assert_within(slices.values, keras_grads[0].values.numpy(), bound.slices.error,
                             f"{flavor} {name}: IndexedSlices values")
    if weights_kind == "trained":
        assert confident > 0, "trained weights must give some |logit| > 15 on these batches"


def test_bounds_are_tight_enough_to_fail(trained_weights, real_batches):
    """The bounds catch a real difference: npembed's old loss gradient, ``sigmoid(z) - y``, on
    trained weights falls outside them in float32 (it cancels for confident predictions), while
    today's stable form is inside."""
    model = npembed.tutorial_model(seed=0)
    model.set_weights(trained_weights[False][0])
    model.compile()
    ids, labels = next((ids, labels) for ids, labels in real_batches
                       if np.abs(model(ids)).max() > 15)
    bound = bounds.model_bounds(model, ids, labels, "float32")
    z = model(ids)[:, 0]
    naive = (1 / (1 + np.exp(-z)) - labels) / len(labels)                          # float32
    good = model.loss.gradient(labels, z)
    bounds.assert_within(good, bound.logits_grad.value[:, 0], bound.logits_grad.error[:, 0] / 2, "stable")
    with pytest.raises(AssertionError, match="outside the error bound"):
        bounds.assert_within(naive, bound.logits_grad.value[:, 0], bound.logits_grad.error[:, 0] / 2, "naive")


def _share_state(np_model, twin, optimizer, adam):
    """Give the Keras optimizer npembed's Adam state (step count and moments)."""
    optimizer.build(twin.trainable_variables)
    optimizer.iterations.assign(adam.iterations)
    for variables, values in ((optimizer._momentums, adam.momentums),
                              (optimizer._velocities, adam.velocities)):
        for variable, value in zip(variables, values):
            variable.assign(value)


@pytest.mark.parametrize("mask_zero", MASKS)
def test_adam_steps_weights_and_moments(flavor, dtype, mask_zero, weights_kind, kernel_backend,
                                        trained_weights, real_batches):
    """Three Adam steps, each from the state both sides share (float32 steps compared one at a
    time: a long float32 trajectory can split at a ReLU kink, see docs/parity.md).  On trained
    weights the moments and the step count come from training too (t > 25,000)."""
    np_model, twin = models(dtype, mask_zero, flavor, weights_kind, trained_weights)
    optimizer = keras_twin.adam(twin)
    if weights_kind == "trained":
        state = {key: value.astype(dtype) if isinstance(value, np.ndarray) else value
                 for key, value in trained_weights[mask_zero][1].items()}
        np_model.optimizer.load_state(state, np_model.weights)
    else:
        np_model.optimizer.build(np_model.weights)                  # zero moments, step 0
    start = np_model.optimizer.iterations
    _share_state(np_model, twin, optimizer, np_model.optimizer)
    adam = np_model.optimizer
    for ids, labels in real_batches[:3]:
        before = [w.astype(np.float64) for w in np_model.get_weights()]
        m_before = [m.astype(np.float64) for m in adam.momentums]
        v_before = [v.astype(np.float64) for v in adam.velocities]
        grad_bounds = bounds.model_bounds(np_model, ids, labels, dtype)
        t = adam.iterations + 1
        beta_1_power, beta_2_power = (float(np.float32(beta)) ** t for beta in (adam.beta_1, adam.beta_2))
        constants = (float(adam.step_size(np.dtype(dtype))), 1 - adam.beta_1, 1 - adam.beta_2, adam.epsilon,
                     beta_1_power, beta_2_power, dtype)
        _, keras_grads = keras_twin.gradients(twin, ids, labels)
        optimizer.apply_gradients(zip(keras_grads, twin.trainable_variables))
        np_model.train_on_batch(ids, labels)
        keras_m, keras_v = keras_twin.adam_slots(optimizer)
        for index, name in enumerate(np_model.weight_names):
            grad = grad_bounds.grads[index]
            if index == 0 and flavor == "keras3":
                squared = grad_bounds.squared                # Keras 3: the sum of squared slices
            else:
                squared = bounds.square(grad, bounds.unit_roundoff(dtype))
            step = bounds.adam_step_bounds(before[index], m_before[index], v_before[index], grad, squared,
                                           *constants)
            what = f"{flavor} step {t}: {name}"
            bounds.assert_within(np_model.get_weights()[index], twin.get_weights()[index], step.weight.error, what)
            bounds.assert_within(adam.momentums[index], keras_m[index], step.m.error, "m " + what)
            bounds.assert_within(adam.velocities[index], keras_v[index], step.v.error, "v " + what)
        # the next step starts from Keras's exact state
        np_model.set_weights(twin.get_weights())
        adam.momentums = [m.copy() for m in keras_m]
        adam.velocities = [v.copy() for v in keras_v]
    assert int(optimizer.iterations.numpy()) == adam.iterations == start + 3


@pytest.mark.parametrize("flavor, other", [("keras3", "keras2"), ("tf_keras", "keras3")])
def test_the_other_kerases_adam_is_outside_the_bound(flavor, other, float64_keras, real_batches):
    """Each Keras's Adam is told apart from the other's by the same bounds: npembed running the
    other variant leaves the embedding's v outside them after one step on a real batch (repeated
    subwords and padding), in float64.  The variant is not a detail the bounds could hide."""
    np_model = npembed.tutorial_model(seed=0, dtype="float64")
    np_model.compile(optimizer=npembed.optimizers.Adam(variant=other))
    twin = keras_twin.build(np_model, flavor)
    ids, labels = real_batches[0]
    bound = bounds.model_bounds(np_model, ids, labels, "float64")
    optimizer = keras_twin.adam(twin)
    _, keras_grads = keras_twin.gradients(twin, ids, labels)
    optimizer.apply_gradients(zip(keras_grads, twin.trainable_variables))
    np_model.train_on_batch(ids, labels)
    _, keras_v = keras_twin.adam_slots(optimizer)
    c2 = 1 - np_model.optimizer.beta_2
    squared = bound.squared if flavor == "keras3" else bounds.square(bound.grads[0], bounds.unit_roundoff("float64"))
    v_bound = c2 * squared.error
    with pytest.raises(AssertionError, match="outside the error bound"):
        bounds.assert_within(np_model.optimizer.velocities[0], keras_v[0], v_bound, "v of the embedding")


@pytest.mark.parametrize("mask_zero", MASKS)
def test_float64_training_trajectory_200_steps(flavor, mask_zero, kernel_backend, float64_keras, real_batches):
    """200 Adam steps on real batches with train_on_batch: every step's loss and the final
    weights agree in float64 (where no ReLU kink splits the runs), for each Keras with its Adam."""
    np_model, twin = models("float64", mask_zero, flavor, seed=1)
    twin.compile(optimizer=keras_twin.adam(twin), loss=keras_twin.loss_function(twin))
    np_losses, keras_losses = [], []
    for ids, labels in real_batches[:200]:
        keras_losses.append(float(twin.train_on_batch(ids, labels.astype("float64"))))
        np_losses.append(np_model.train_on_batch(ids, labels))
    tol = tolerances.FLOAT64_TRAJECTORY
    np.testing.assert_allclose(np_losses, keras_losses, rtol=tol["loss"].rtol, atol=tol["loss"].atol,
                               err_msg=tol["loss"].why)
    assert np.mean(np_losses[-50:]) < np.mean(np_losses[:50])      # it is learning
    for name, w, kw in zip(np_model.weight_names, np_model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(w, kw, rtol=0, atol=tol["weights"].atol, err_msg=f"{name}: {tol['weights'].why}")


def test_npembed_grads_prints_keras_beside_npembed(imdb, capsys, monkeypatch):
    from npembed import cli
    monkeypatch.setenv("NPEMBED_DATA", str(imdb.source.path))
    assert cli.main(["grads", "--batch", "5"]) == 0
    out = capsys.readouterr().out
    assert "npembed / Keras / max |difference|" in out
    loss_line = next(line for line in out.splitlines() if "loss: npembed" in line)
    ours, theirs = float(loss_line.split()[2]), float(loss_line.split()[4])
    assert ours == pytest.approx(theirs, rel=1e-6)
