"""fit, evaluate and the metrics against both Kerases, on the same real batches (float64, so that
the comparison is of bookkeeping, not rounding), and one full epoch of the tutorial against the
Keras it was published with."""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed import keras_twin

from parity_tests import tolerances


def as_dataset(batches):
    """The batches as a tf.data dataset of known length.  (With unknown cardinality, as a bare
    ``from_generator`` has, Keras 3.15's ``fit`` was seen to take 41 optimizer steps per
    40-batch epoch, which no npembed behaviour should copy.)"""
    import tensorflow as tf
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(batches),
        output_signature=(tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None,), tf.int8)))
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches)))


@pytest.mark.parametrize("mask_zero", [False, True])
def test_fit_history_and_evaluate_match_keras(flavor, kernel_backend, float64_keras, real_batches, mask_zero):
    train, validation = real_batches[:40], real_batches[200:260]
    np_model = npembed.tutorial_model(seed=2, mask_zero=mask_zero, dtype="float64")
    twin = keras_twin.build(np_model, flavor)
    np_model.compile(optimizer=npembed.optimizers.Adam(variant=keras_twin.ADAM_VARIANT[flavor]),
                     metrics=["tutorial_accuracy"])
    twin.compile(optimizer=keras_twin.adam(twin), loss=keras_twin.loss_function(twin), metrics=["accuracy"])
    history = np_model.fit(train, epochs=2, validation_data=validation, validation_steps=20, verbose=0)
    keras_history = twin.fit(as_dataset(train), epochs=2, validation_data=as_dataset(validation),
                             validation_steps=20, verbose=0)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(history.history[key], keras_history.history[key], rtol=1e-10, err_msg=key)
    # Keras's 'accuracy' on a one-unit logit output is BinaryAccuracy(threshold=0.5): the quirk.
    for key in ("tutorial_accuracy", "val_tutorial_accuracy"):
        np.testing.assert_allclose(history.history[key], keras_history.history[key.replace("tutorial_", "")],
                                   rtol=1e-12, err_msg=key)
    result = np_model.evaluate(validation)
    keras_result = twin.evaluate(as_dataset(validation), verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(keras_result["loss"], rel=1e-10)
    assert result["tutorial_accuracy"] == pytest.approx(keras_result["accuracy"], rel=1e-12)


def test_one_epoch_of_the_tutorial_equals_tf_keras_fit(kernel_backend, float64_keras, imdb, real_batches):
    """npembed's default (``Adam()``, keras2) and ``tf_keras``'s ``model.fit``, from the same
    weights on the same 2,500 real batches of the tutorial's pipeline, in float64: the per-epoch
    history (loss, the tutorial's accuracy, validation on 20 batches) agrees.  This is the Keras
    the tutorial's printed curve came from."""
    epoch = list(imdb.train.batches(10, shuffle_buffer=1000, seed=0).for_epoch(0))
    validation = real_batches[:20]
    assert len(epoch) == 2500
    np_model = npembed.tutorial_model(seed=4, dtype="float64")
    twin = keras_twin.build(np_model, "tf_keras")
    np_model.compile(metrics=["tutorial_accuracy"])                    # the default Adam: keras2
    twin.compile(optimizer=keras_twin.adam(twin), loss=keras_twin.loss_function(twin), metrics=["accuracy"])
    history = np_model.fit(epoch, epochs=1, validation_data=validation, validation_steps=20, verbose=0).history
    keras_history = twin.fit(as_dataset(epoch), epochs=1, validation_data=as_dataset(validation),
                             validation_steps=20, verbose=0).history
    tol = tolerances.FLOAT64_FIT
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(history[key], keras_history[key], rtol=tol["loss"].rtol, err_msg=key)
    for key in ("tutorial_accuracy", "val_tutorial_accuracy"):
        assert history[key] == keras_history[key.replace("tutorial_", "")], tol["accuracy"].why
    assert history["loss"][0] < 0.6                       # it learned: the tutorial printed 0.506
    for name, w, kw in zip(np_model.weight_names, np_model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(w, kw, rtol=0, atol=tol["weights"].atol, err_msg=f"{name}: {tol['weights'].why}")


def test_accuracy_matches_binary_accuracy_threshold_zero(kernel_backend, real_batches):
    import keras
    np_model = npembed.tutorial_model(seed=3)
    np_model.compile(metrics=["accuracy"])
    # train a little so that logits spread on both sides of 0 and of 0.5
    for ids, labels in real_batches[:150]:
        np_model.train_on_batch(ids, labels)
    metric = keras.metrics.BinaryAccuracy(threshold=0.0)
    quirk = keras.metrics.BinaryAccuracy(threshold=0.5)
    correct, quirky = npembed.metrics.get("accuracy"), npembed.metrics.get("tutorial_accuracy")
    for ids, labels in real_batches[150:200]:
        logits = np_model(ids)
        metric.update_state(labels.reshape(-1, 1).astype("float32"), logits)
        quirk.update_state(labels.reshape(-1, 1).astype("float32"), logits)
        correct.update_state(labels, logits)
        quirky.update_state(labels, logits)
    assert correct.result() == pytest.approx(float(metric.result()), abs=1e-7)
    assert quirky.result() == pytest.approx(float(quirk.result()), abs=1e-7)
    assert correct.result() != quirky.result()       # the quirk is not a harmless rename
