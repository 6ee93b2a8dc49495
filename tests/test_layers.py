"""Every layer's backward against float64 central differences, and the forward formulas."""
import numpy as np
import pytest

from npembed.gradcheck import numerical_gradient, numerical_input_gradient, rel_error
from npembed.layers import Dense, Embedding, GlobalAveragePooling1D, PooledEmbedding
from npembed.sparse import PooledSlices

TOL = 1e-6  # float64 central differences with h=1e-5 agree to about 1e-9 here


def built(layer, width, dtype=np.float64, seed=0):
    layer.build(width, np.random.default_rng(seed), np.dtype(dtype))
    return layer


def test_embedding_forward_is_a_row_lookup(small_batch):
    ids, _ = small_batch
    layer = built(Embedding(30, 4), None)
    out = layer.forward(ids)
    assert out.shape == (*ids.shape, 4)
    np.testing.assert_array_equal(out[1, 2], layer.params["embeddings"][ids[1, 2]])


def test_embedding_backward_scatter_adds_repeated_tokens(small_batch):
    ids, _ = small_batch
    layer = built(Embedding(30, 4), None)
    out = layer.forward(ids)
    dout = np.random.default_rng(1).normal(size=out.shape)
    layer.backward(dout)
    table = layer.params["embeddings"]
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(ids) * dout)), table)
    dense = layer.grads["embeddings"].to_dense()
    assert rel_error(dense, numeric) < TOL
    # The repeated token of row 1 receives the sum of its three slices.
    token = ids[1, 0]
    expected = sum(dout[b, t] for b, t in zip(*np.nonzero(ids == token)))
    np.testing.assert_allclose(dense[token], expected)


def test_embedding_sparse_gradient_has_one_slice_per_position(small_batch):
    ids, _ = small_batch
    layer = built(Embedding(30, 4), None)
    dout = np.random.default_rng(2).normal(size=(*ids.shape, 4))
    layer.forward(ids)
    layer.backward(dout)
    slices = layer.grads["embeddings"]
    assert slices.values.shape == (ids.size, 4)
    np.testing.assert_array_equal(slices.indices, ids.ravel())
    np.testing.assert_array_equal(slices.values, dout.reshape(-1, 4))
    # squared_sum squares each slice before summing: differs from the square of the sum.
    token = ids[1, 0]
    per_slice = sum(dout[b, t] ** 2 for b, t in zip(*np.nonzero(ids == token)))
    np.testing.assert_allclose(slices.squared_sum()[token], per_slice)
    assert not np.allclose(per_slice, slices.to_dense()[token] ** 2)


@pytest.mark.parametrize("masked", [False, True])
def test_pooling_backward(small_batch, masked):
    ids, _ = small_batch
    mask = ids != 0 if masked else None
    x = np.random.default_rng(3).normal(size=(*ids.shape, 4))
    layer = GlobalAveragePooling1D()
    out = layer.forward(x, mask)
    dout = np.random.default_rng(4).normal(size=out.shape)
    dx = layer.backward(dout)
    numeric = numerical_input_gradient(lambda v: layer.forward(v, mask), x, dout)
    assert rel_error(dx, numeric) < TOL


def test_pooling_averages_over_padded_length_without_mask_and_tokens_with_it(small_batch):
    ids, _ = small_batch
    x = np.random.default_rng(5).normal(size=(*ids.shape, 4))
    layer = GlobalAveragePooling1D()
    np.testing.assert_allclose(layer.forward(x)[3], x[3].sum(axis=0) / ids.shape[1])
    n = np.count_nonzero(ids[3])
    np.testing.assert_allclose(layer.forward(x, ids != 0)[3], x[3][ids[3] != 0].sum(axis=0) / n)


def test_masked_pooling_rejects_an_all_padding_row():
    with pytest.raises(ValueError, match="row 1 of the batch is all padding"):
        GlobalAveragePooling1D().forward(np.ones((2, 3, 4)), np.array([[1, 0, 0], [0, 0, 0]], bool))


def pooled_pair(mask_zero, dtype=np.float64):
    embedding, pooling = built(Embedding(30, 4, mask_zero=mask_zero), None, dtype), GlobalAveragePooling1D()
    return embedding, pooling, PooledEmbedding(embedding, pooling)


@pytest.mark.parametrize("masked", [False, True])
def test_pooled_embedding_backward(small_batch, masked, kernel_backend):
    """dE = sum_b c[b, r] g[b] against central differences of sum(pooled * dpooled)."""
    ids, _ = small_batch
    _, _, layer = pooled_pair(masked)
    out = layer.forward(ids)
    assert out.shape == (ids.shape[0], 4)
    dout = np.random.default_rng(7).normal(size=out.shape)
    assert layer.backward(dout) is None
    table = layer.params["embeddings"]
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(ids) * dout)), table)
    grad = layer.grads["embeddings"]
    assert isinstance(grad, PooledSlices)
    assert rel_error(grad.to_dense(), numeric) < TOL
    if masked:
        np.testing.assert_array_equal(grad.to_dense()[0], 0)       # padding weighs nothing
    else:
        assert np.abs(grad.to_dense()[0]).sum() > 0                   # padding weighs 1/L


@pytest.mark.parametrize("masked", [False, True])
def test_pooled_embedding_equals_its_two_layers_and_fills_both(small_batch, masked, kernel_backend):
    """Same output, same slices, same dE and S as Embedding then GlobalAveragePooling1D; the
    embedding's grads are the fused layer's, and both layers' caches are filled so that each
    layer's own backward still runs after the fused forward."""
    ids, _ = small_batch
    embedding, pooling, fused = pooled_pair(masked)
    mask = ids != 0 if masked else None
    expected = pooling.forward(embedding.forward(ids), mask)
    dout = np.random.default_rng(8).normal(size=expected.shape)
    embedding.backward(pooling.backward(dout))
    layer_slices = embedding.grads["embeddings"]
    embedding.grads.clear()
    pooling.cache, embedding.cache = {}, {}
    np.testing.assert_allclose(fused.forward(ids), expected, rtol=1e-14)
    fused.backward(dout)
    assert fused.grads is embedding.grads and set(embedding.grads) == {"embeddings"}
    slices = embedding.grads["embeddings"]
    np.testing.assert_array_equal(slices.indices, layer_slices.indices)
    np.testing.assert_allclose(slices.values, layer_slices.values, rtol=1e-15)
    np.testing.assert_allclose(slices.to_dense(), layer_slices.to_dense(), rtol=1e-13, atol=1e-17)
    np.testing.assert_allclose(slices.squared_sum(), layer_slices.squared_sum(), rtol=1e-13, atol=1e-17)
    embedding.backward(pooling.backward(dout))          # the layers' own caches, from the fused forward
    np.testing.assert_allclose(embedding.grads["embeddings"].values, layer_slices.values, rtol=1e-15)


@pytest.mark.parametrize("activation", [None, "relu"])
def test_dense_backward(activation):
    rng = np.random.default_rng(6)
    layer = built(Dense(5, activation=activation), 4)
    x = rng.normal(size=(7, 4))
    out = layer.forward(x)
    dout = rng.normal(size=out.shape)
    dx = layer.backward(dout)
    assert rel_error(dx, numerical_input_gradient(layer.forward, x, dout)) < TOL
    for name in ("kernel", "bias"):
        numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * dout)), layer.params[name])
        assert rel_error(layer.grads[name], numeric) < TOL, name


def test_relu_gradient_at_exactly_zero_is_zero():
    layer = built(Dense(2, activation="relu"), 1)
    layer.params["kernel"][...] = [[1.0, 1.0]]
    layer.params["bias"][...] = [0.0, -1.0]
    layer.forward(np.array([[0.0], [2.0]]))          # z = [[0, -1], [2, 1]]
    layer.backward(np.ones((2, 2)))
    np.testing.assert_array_equal(layer.grads["bias"], [1.0, 1.0])   # only z > 0 passes
    np.testing.assert_array_equal(layer.grads["kernel"], [[2.0, 2.0]])


def test_initializers_follow_keras_ranges():
    emb = built(Embedding(8185, 16), None, np.float32)
    dense = built(Dense(16), 16, np.float32)
    assert emb.params["embeddings"].dtype == np.float32
    assert np.abs(emb.params["embeddings"]).max() <= 0.05
    limit = np.sqrt(6 / 32)
    assert np.abs(dense.params["kernel"]).max() <= limit
    assert np.abs(dense.params["kernel"]).max() > 0.9 * limit   # uses the range, not a smaller one
    np.testing.assert_array_equal(dense.params["bias"], 0)
