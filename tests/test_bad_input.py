"""Every bad input to the engine gets an error that names the problem."""
import numpy as np
import pytest

import npembed
from npembed.layers import Dense, Embedding

from conftest import small_model


@pytest.fixture
def model():
    m = small_model(dtype="float32")
    m.compile()
    return m


GOOD_IDS = np.array([[1, 2, 0], [3, 3, 4]])
GOOD_LABELS = np.array([0, 1])


@pytest.mark.parametrize("ids, error, message", [
    (np.array([[1, 30]]), ValueError, r"token id 30 is out of range for an Embedding with input_dim=30"),
    (np.array([[1, -1]]), ValueError, r"token ids must be >= 0, found -1 .*silently index from the end"),
    (np.array([[1.0, 2.0]]), TypeError, r"integer array, got dtype float64.*astype\('int64'\)"),
    (np.array([[0.5, 2.0]]), TypeError, r"integer array, got dtype float64$"),
    (np.array(["a", "b"])[None], TypeError, r"integer array, got dtype <U1"),
    (np.array([1, 2, 3]), ValueError, r"shape \(batch, seq_len\), got shape \(3,\).*ids\[None, :\]"),
    (np.zeros((2, 2, 2), dtype=int), ValueError, r"got shape \(2, 2, 2\) \(rank 3\)"),
    (np.zeros((0, 5), dtype=int), ValueError, r"empty batch: token ids have shape \(0, 5\)"),
    (np.zeros((2, 0), dtype=int), ValueError, r"empty batch"),
])
def test_bad_token_ids(model, ids, error, message):
    with pytest.raises(error, match=message):
        model(ids)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 1]), r"labels must have shape \(2,\) or \(2, 1\).*got shape \(3,\)"),
    (np.array([[0, 1]]), r"got shape \(1, 2\)"),
    (np.array([0, 2]), r"labels must be 0 \(negative\) or 1 \(positive\), found 2 at position 1"),
    (np.array([0.5, 1.0]), r"found 0.5 at position 0"),
])
def test_bad_labels(model, labels, message):
    with pytest.raises(ValueError, match=message):
        model.train_on_batch(GOOD_IDS, labels)


def test_labels_of_shape_batch_by_one_are_accepted(model):
    assert np.isfinite(model.train_on_batch(GOOD_IDS, GOOD_LABELS[:, None]))


def test_string_labels(model):
    with pytest.raises(TypeError, match="labels must be numeric 0/1 values"):
        model.train_on_batch(GOOD_IDS, np.array(["neg", "pos"]))


def test_training_before_compile():
    with pytest.raises(RuntimeError, match="compile"):
        small_model().train_on_batch(GOOD_IDS, GOOD_LABELS)


@pytest.mark.parametrize("epochs", [0, -1, 1.5])
def test_bad_epochs(model, epochs):
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        model.fit([(GOOD_IDS, GOOD_LABELS)], epochs=epochs, verbose=0)


def test_empty_training_data(model):
    with pytest.raises(ValueError, match="yielded no batch"):
        model.fit([], verbose=0)


@pytest.mark.parametrize("make, message", [
    (lambda: Embedding(0, 4), "positive integer input_dim and output_dim"),
    (lambda: Dense(0), "positive integer number of units"),
    (lambda: Dense(3, activation="tanh"), "activation must be one of"),
    (lambda: npembed.metrics.get("f1"), "unknown metric 'f1'"),
])
def test_bad_layer_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_masked_model_rejects_an_all_padding_review():
    model = small_model(mask_zero=True)
    with pytest.raises(ValueError, match="row 1 of the batch is all padding"):
        model(np.array([[1, 2], [0, 0]]))
