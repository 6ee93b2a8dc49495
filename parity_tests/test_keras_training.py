"""fit, evaluate and the metrics against Keras, on the same real batches (float64, so that the
comparison is of bookkeeping, not rounding)."""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed import keras_twin


@pytest.fixture
def float64_keras():
    import keras
    keras.config.set_floatx("float64")
    yield keras
    keras.config.set_floatx("float32")


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
def test_fit_history_and_evaluate_match_keras(float64_keras, real_batches, mask_zero):
    keras = float64_keras
    train, validation = real_batches[:40], real_batches[200:260]
    np_model = npembed.tutorial_model(seed=2, mask_zero=mask_zero, dtype="float64")
    twin = keras_twin.build(np_model)
    np_model.compile(optimizer=npembed.optimizers.Adam(), metrics=["tutorial_accuracy"])
    twin.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                 metrics=["accuracy"])
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


def test_accuracy_matches_binary_accuracy_threshold_zero(real_batches):
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
