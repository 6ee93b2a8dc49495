"""The n-gram model (``npembed train --model ngrams``) against its Keras twin, in both Kerases.

The twin is ``Embedding(V + buckets, D, mask_zero=True) -> GlobalAveragePooling1D -> Dense(1)``
(and the hidden layer when asked), given npembed's weights; both see the same real reviews with
their hashed bigrams and trigrams (few buckets, so that n-grams collide).  Loss and every
gradient must lie within twice the error bounds of parity_tests/bounds.py (model_bounds covers
any Embedding -> GlobalAveragePooling1D -> Dense stack), and the IndexedSlices match slice by
slice.  Keras has no lazy Adam; lazy Adam's own step is checked in tests/test_ngram_model.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed import keras_twin
from npembed.datasets.ngrams import ngram_split

from parity_tests import bounds

BUCKETS = 997


@pytest.fixture(scope="module")
def ngram_batches(imdb):
    """Five real batches of 10 train reviews, each with its hashed 2- and 3-grams."""
    grams = ngram_split(imdb.train, 3, BUCKETS, imdb.encoder.vocab_size)
    order = np.random.default_rng(0).permutation(len(grams))
    return [(grams.padded(order[i:i + 10]), grams.labels[order[i:i + 10]]) for i in range(0, 50, 10)]


@pytest.mark.parametrize("hidden_units", [0, 16])
def test_ngram_model_loss_and_gradients_match_keras(flavor, dtype, kernel_backend, ngram_batches, imdb, hidden_units):
    vocab = imdb.encoder.vocab_size
    np_model = npembed.tutorial_model(vocab + BUCKETS, 16, hidden_units, mask_zero=True, seed=1, dtype=dtype)
    twin = keras_twin.build(np_model, flavor)
    for index, (ids, labels) in enumerate(ngram_batches):
        assert ids.max() >= vocab                                       # n-gram rows are looked up
        bound = bounds.model_bounds(np_model, ids, labels, dtype)
        keras_loss, keras_grads = keras_twin.gradients(twin, ids, labels)
        loss, grads = np_model.compute_gradients(ids, labels)
        bounds.assert_within(loss, keras_loss, bound.loss.error, f"{flavor} ngram batch {index}: loss")
        for name, grad, keras_grad, grad_bound in zip(np_model.weight_names, grads, keras_grads, bound.grads):
            bounds.assert_within(grad, keras_twin.to_numpy(keras_grad), grad_bound.error,
                                 f"{flavor} ngram batch {index}: gradient of {name}")
        slices = np_model.layers[0].grads["embeddings"]
        np.testing.assert_array_equal(slices.indices, keras_grads[0].indices.numpy())


def test_ngram_model_trains_like_tf_keras_in_float64(float64_keras, ngram_batches, imdb):
    """Twenty Adam steps (keras2, the textbook Adam tf_keras applies) on the n-gram batches:
    the weights stay within 1e-12 of tf_keras's."""
    import tensorflow as tf
    vocab = imdb.encoder.vocab_size
    np_model = npembed.tutorial_model(vocab + BUCKETS, 16, 0, mask_zero=True, seed=1, dtype="float64")
    np_model.compile(optimizer=npembed.optimizers.Adam(learning_rate=0.01, variant="keras2"))
    twin = keras_twin.build(np_model, "tf_keras")
    initial_ngram_rows = np_model.get_weights()[0][vocab:]
    optimizer = keras_twin.adam(twin, learning_rate=0.01)
    loss_fn = keras_twin.loss_function(twin)
    for step in range(20):
        ids, labels = ngram_batches[step % len(ngram_batches)]
        np_model.train_on_batch(ids, labels)
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.constant(labels.reshape(-1, 1), tf.float64), twin(tf.constant(ids), training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, twin.trainable_variables), twin.trainable_variables))
    for ours, theirs in zip(np_model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    assert np.abs(np_model.get_weights()[0][vocab:] - initial_ngram_rows).max() > 1e-3   # the n-gram rows trained
