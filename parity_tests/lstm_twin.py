"""The Keras twin of an npembed recurrent model (Embedding, LSTM, Bidirectional, Dense, Dropout),
in either Keras, with npembed's weights: what parity_tests/test_lstm_parity.py compares with.

keras_twin.build covers the tutorial's layers only; this adds the recurrent ones without
touching it.  Dropout becomes Keras's Dropout (compared in inference mode), or, with
``fixed_keep``, a Lambda applying npembed's fixed mask the way TensorFlow's dropout does
(``x * (1 / (1 - rate)) * keep``) so that training-mode gradients can be compared too.
"""
from __future__ import annotations

import numpy as np

from npembed import keras_twin
from npembed.layers import Dense, Dropout, Embedding
from npembed.recurrent import LSTM, Bidirectional


def _lstm(keras, layer: LSTM, dtype: str, name: str):
    return keras.layers.LSTM(layer.units, return_sequences=layer.return_sequences,
                             go_backwards=layer.go_backwards, dtype=dtype, name=name)


def _twin_layer(keras, layer, dtype):
    if isinstance(layer, Embedding):
        return keras.layers.Embedding(layer.input_dim, layer.output_dim, mask_zero=layer.mask_zero,
                                      dtype=dtype, name=layer.name)
    if isinstance(layer, Bidirectional):
        inner = _lstm(keras, layer.forward_layer, dtype, layer.forward_layer.name[len("forward_"):])
        return keras.layers.Bidirectional(inner, dtype=dtype, name=layer.name)
    if isinstance(layer, LSTM):
        return _lstm(keras, layer, dtype, layer.name)
    if isinstance(layer, Dense):
        return keras.layers.Dense(layer.units, activation=layer.activation, dtype=dtype, name=layer.name)
    if isinstance(layer, Dropout):
        if layer.fixed_keep is None:
            return keras.layers.Dropout(layer.rate, dtype=dtype, name=layer.name)
        scale, keep = 1 / (1 - layer.rate), layer.fixed_keep.astype(dtype)
        return keras.layers.Lambda(lambda x: x * np.asarray(scale, dtype) * keep, dtype=dtype, name=layer.name)
    raise TypeError(f"no Keras twin for {type(layer).__name__}")


def build(np_model, flavor: str = "keras3"):
    """A Sequential of that Keras with np_model's layers, dtype and weights."""
    keras = keras_twin.keras_module(flavor)
    dtype = np_model.dtype.name
    layers = [_twin_layer(keras, layer, dtype) for layer in np_model.layers]
    twin = keras.Sequential([keras.Input(shape=(None,), dtype="int64"), *layers])
    twin.set_weights(np_model.get_weights())
    twin.flavor = flavor
    return twin


def gradients(twin, ids, labels, training: bool):
    """(loss, dense grads) by tf.GradientTape, with Keras's ``training`` flag."""
    tf = keras_twin._tf()
    x = tf.constant(ids, dtype=tf.int64)
    y = tf.constant(np.asarray(labels).reshape(-1, 1), dtype=twin.layers[-1].dtype)
    with tf.GradientTape() as tape:
        loss = keras_twin.loss_function(twin)(y, twin(x, training=training))
    grads = tape.gradient(loss, twin.trainable_variables)
    return float(loss.numpy()), [keras_twin.to_numpy(g) for g in grads]


def np_gradients(np_model, ids, labels, training: bool):
    """npembed's (loss, dense grads), Dropout on or off as ``training`` says."""
    logits = np_model.forward(ids, training=training)
    loss = np_model.loss(labels, logits)
    np_model.backward(np_model.loss.gradient(labels, logits))
    return loss, np_model.gradients()
