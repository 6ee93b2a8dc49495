"""The Keras twin of an npembed model, in either Keras, for parity checks (needs TensorFlow;
imported lazily).

    twin = keras_twin.build(np_model)                     # Keras 3: same layers, weights, dtype
    twin = keras_twin.build(np_model, flavor="tf_keras")  # the tutorial's Keras 2 (tf_keras)
    out = keras_twin.forward(twin, ids)                   # every intermediate output, as NumPy
    loss, grads = keras_twin.gradients(twin, ids, labels) # tf.GradientTape
    optimizer = keras_twin.adam(twin)                     # that Keras's Adam()

The twin is the tutorial's model: ``Embedding -> GlobalAveragePooling1D -> Dense(relu) ->
Dense(1)``, built with the npembed model's sizes and masking and given its weights with
``set_weights(np_model.get_weights())``: no reshaping, the order is Keras's.

Two flavors, each with the npembed Adam variant that reproduces it (``ADAM_VARIANT``):

- ``"keras3"``: Keras 3 (``import keras``), what ``tf.keras`` is in TensorFlow 2.16 and later;
- ``"tf_keras"``: Keras 2 (``import tf_keras``, the version matching TensorFlow), the
  ``tf.keras`` of TF 2.1 that the tutorial was run with.
"""
from __future__ import annotations

import os

import numpy as np

from npembed.layers import Dense, Embedding, GlobalAveragePooling1D

FLAVORS = ("keras3", "tf_keras")
ADAM_VARIANT = {"keras3": "keras3", "tf_keras": "keras2"}


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")     # keep TensorFlow's start-up chatter off
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError("the Keras twin needs TensorFlow: pip install 'npembed[tensorflow]'") from err
    return tf


def keras_module(flavor: str = "keras3"):
    """The ``keras`` (3) or ``tf_keras`` (2) module."""
    _tf()
    if flavor == "keras3":
        import keras
        return keras
    if flavor == "tf_keras":
        try:
            import tf_keras
        except ImportError as err:
            raise ImportError("the Keras 2 twin needs tf_keras: pip install 'npembed[tensorflow]'") from err
        return tf_keras
    raise ValueError(f"flavor must be one of {FLAVORS}, got {flavor!r}")


def set_floatx(flavor: str, dtype: str) -> str:
    """Set that Keras's floatx (its losses and metrics follow it, not the layers' dtype);
    returns the previous one."""
    keras = keras_module(flavor)
    backend = keras.config if flavor == "keras3" else keras.backend
    previous = backend.floatx()
    backend.set_floatx(dtype)
    return previous


TWINNED = (Embedding, GlobalAveragePooling1D, Dense)


def untwinned(np_model) -> list[str]:
    """The names of np_model's layer types that have no Keras twin here (an LSTM's parity is
    parity_tests/test_lstm_parity.py's); [] when build(np_model) can make its twin."""
    return sorted({type(layer).__name__ for layer in np_model.layers if not isinstance(layer, TWINNED)})


def build(np_model, flavor: str = "keras3"):
    """A ``Sequential`` of that Keras with np_model's architecture, dtype and weights."""
    keras = keras_module(flavor)
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
    twin.flavor = flavor
    return twin


def adam(twin, **kwargs):
    """The twin's Keras's ``Adam(**kwargs)`` (defaults: the tutorial's)."""
    return keras_module(twin.flavor).optimizers.Adam(**kwargs)


def loss_function(twin):
    """The twin's Keras's ``BinaryCrossentropy(from_logits=True)``."""
    return keras_module(twin.flavor).losses.BinaryCrossentropy(from_logits=True)


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


def gradients(twin, ids, labels):
    """(loss, grads) with ``tf.GradientTape``; grads[0] is the embedding's IndexedSlices."""
    tf = _tf()
    x = tf.constant(ids, dtype=tf.int64)
    y = tf.constant(np.asarray(labels).reshape(-1, 1), dtype=twin.layers[-1].dtype)
    with tf.GradientTape() as tape:
        logits = twin(x, training=True)
        loss = loss_function(twin)(y, logits)
    return loss.numpy(), tape.gradient(loss, twin.trainable_variables)


def to_numpy(grad) -> np.ndarray:
    """A dense NumPy array from a tensor or IndexedSlices."""
    tf = _tf()
    return tf.convert_to_tensor(grad).numpy()


def adam_slots(optimizer) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Adam's first and second moments, in variable order (both Kerases keep them in
    ``_momentums`` and ``_velocities``)."""
    return ([m.numpy() for m in optimizer._momentums], [v.numpy() for v in optimizer._velocities])
