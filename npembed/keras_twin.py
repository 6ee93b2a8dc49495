"""The Keras twin of an npembed model, for parity checks (needs TensorFlow; imported lazily).

    twin = keras_twin.build(np_model)          # same layers, same weights, same dtype
    out = keras_twin.forward(twin, ids)       # every intermediate output, as NumPy
    loss, grads = keras_twin.gradients(twin, ids, labels)   # tf.GradientTape

The twin is the tutorial's model in Keras 3: ``Embedding -> GlobalAveragePooling1D ->
Dense(relu) -> Dense(1)``, built with the npembed model's sizes and masking and given its weights
with ``set_weights(np_model.get_weights())``: no reshaping, the order is Keras's.
"""
from __future__ import annotations

import os

import numpy as np


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")     # keep TensorFlow's start-up chatter off
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError("the Keras twin needs TensorFlow: pip install 'npembed[tensorflow]'") from err
    return tf


def build(np_model):
    """A ``keras.Sequential`` with np_model's architecture, dtype and weights."""
    tf = _tf()
    keras = tf.keras
    from npembed.layers import Dense, Embedding, GlobalAveragePooling1D
    dtype = np_model.dtype.name
    layers = []
    for layer in np_model.layers:
        if isinstance(layer, Embedding):
            layers.append(keras.layers.Embedding(layer.input_dim, layer.output_dim,
                                                 mask_zero=layer.mask_zero, dtype=dtype, name=layer.name))
        elif isinstance(layer, GlobalAveragePooling1D):
            layers.append(keras.layers.GlobalAveragePooling1D(dtype=dtype, name=layer.name))
        elif isinstance(layer, Dense):
            layers.append(keras.layers.Dense(layer.units, activation=layer.activation, dtype=dtype,
                                             name=layer.name))
        else:
            raise TypeError(f"no Keras twin for {type(layer).__name__}")
    twin = keras.Sequential([keras.Input(shape=(None,), dtype="int64"), *layers])
    twin.set_weights(np_model.get_weights())
    return twin


def forward(twin, ids) -> dict[str, np.ndarray]:
    """Every layer's output, layer by layer with the mask passed on as Keras does."""
    tf = _tf()
    x = tf.constant(ids, dtype=tf.int64)
    outputs = {}
    mask = None
    for layer in twin.layers:
        previous = x
        x = layer(x, mask=mask) if mask is not None else layer(x)
        mask = layer.compute_mask(previous, mask)
        outputs[layer.name] = x.numpy()
    return outputs


def loss_fn(twin):
    import keras
    return keras.losses.BinaryCrossentropy(from_logits=True)


def gradients(twin, ids, labels):
    """(loss, grads) with ``tf.GradientTape``; grads[0] is the embedding's IndexedSlices."""
    tf = _tf()
    x = tf.constant(ids, dtype=tf.int64)
    y = tf.constant(np.asarray(labels).reshape(-1, 1), dtype=twin.layers[-1].dtype)
    with tf.GradientTape() as tape:
        logits = twin(x, training=True)
        loss = loss_fn(twin)(y, logits)
    return loss.numpy(), tape.gradient(loss, twin.trainable_variables)


def to_numpy(grad) -> np.ndarray:
    """A dense NumPy array from a tensor or IndexedSlices."""
    tf = _tf()
    return tf.convert_to_tensor(grad).numpy()


def adam_slots(optimizer) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Keras 3 Adam's first and second moments, in variable order."""
    return ([m.numpy() for m in optimizer._momentums], [v.numpy() for v in optimizer._velocities])
