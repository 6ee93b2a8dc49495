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


# ---------------------------------------------------------------- found by adversarial testing (issue #11)
@pytest.mark.parametrize("make, error, message", [
    (lambda: Embedding(None, 4), TypeError, "positive integer input_dim"),
    (lambda: Embedding(float("inf"), 4), ValueError, "positive integer input_dim"),      # was OverflowError
    (lambda: Embedding(True, 4), TypeError, "positive integer input_dim"),
    (lambda: Dense(float("nan")), ValueError, "positive integer number of units"),
    (lambda: npembed.Sequential(Embedding(5, 2)), TypeError, "a list of layers"),
    (lambda: npembed.Sequential([Embedding(5, 2), "dense"]), TypeError, "item 1 is a str"),   # was AttributeError
    (lambda: npembed.Sequential([Embedding(5, 2), Dense(1)]), ValueError, "put GlobalAveragePooling1D"),
    (lambda: npembed.Sequential([Embedding(5, 2), npembed.layers.GlobalAveragePooling1D(),
                                 npembed.layers.GlobalAveragePooling1D()]), ValueError, "takes rank-3 input"),
    (lambda: npembed.Sequential([Embedding(5, 2)], seed=-1), ValueError, "seed must be None or an integer"),
    (lambda: npembed.optimizers.Adam(learning_rate="0.1"), TypeError, "learning_rate must be a number"),
    (lambda: npembed.optimizers.Adam(learning_rate=1e300), ValueError, "inf in float32"),
    (lambda: npembed.optimizers.Adam(variant=["lazy"]), ValueError, "variant must be one of"),
])
def test_bad_model_arguments_name_the_argument(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_compile_fit_and_predict_arguments(model):
    batches = [(GOOD_IDS, GOOD_LABELS)]
    with pytest.raises(TypeError, match="loss must be npembed.losses.BinaryCrossentropy"):
        model.compile(loss="mse")                       # was accepted, then "'str' object is not callable"
    model.compile(metrics="accuracy")                   # one name, not its letters
    assert [m.name for m in model.metrics] == ["accuracy"]
    for call, error, message in [
        (lambda: model.fit(GOOD_IDS, verbose=0), TypeError, r"a pair \(ids, labels\)"),
        (lambda: model.fit(None, verbose=0), TypeError, "must be an iterable"),
        (lambda: model.fit(batches, callbacks=[1], verbose=0), TypeError, "is not an npembed.Callback"),
        (lambda: model.fit(batches, epochs=2, initial_epoch=3, verbose=0), ValueError, "initial_epoch must be"),
        (lambda: model.fit(iter(batches), epochs=2, verbose=0), ValueError, "used up by the first epoch"),
        (lambda: model.predict(GOOD_IDS, batch_size=0), ValueError, "batch_size must be a positive integer"),
        (lambda: model([[1, 2], [3]]), ValueError, "must be padded"),
        (lambda: model.set_weights(None), TypeError, "set_weights takes a list"),
    ]:
        with pytest.raises(error, match=message):
            call()
    model.fit(batches, callbacks=npembed.Callback(), verbose=0)      # one callback, not a list
