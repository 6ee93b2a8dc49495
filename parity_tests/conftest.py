"""Fixtures for the Keras parity suite: TensorFlow (or a skip/failure), both Kerases, real
subword batches, fresh and trained weights, both kernel backends.

Without TensorFlow the suite is skipped with the reason, except under CI (CI=true), where a
missing TensorFlow is a failure: CI must run these.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import imdb, kernel_backend, real_data_path  # noqa: E402,F401  (shared fixtures)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _require_tensorflow():
    try:
        import tensorflow  # noqa: F401
        import keras  # noqa: F401
        import tf_keras  # noqa: F401
    except ImportError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the parity tests, but TensorFlow is missing: {err}. "
                        "make test installs it: pip install -e '.[all]'")
        pytest.skip(f"parity tests need TensorFlow, Keras 3 and tf_keras (pip install "
                    f"'npembed[tensorflow]'): {err}")


@pytest.fixture(scope="session", autouse=True)
def tensorflow_available():
    _require_tensorflow()


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Run a test in float32 and in float64; both Kerases' floatx follow, since their losses and
    metrics use floatx rather than the layers' dtype."""
    from npembed import keras_twin
    previous = {flavor: keras_twin.set_floatx(flavor, request.param) for flavor in keras_twin.FLAVORS}
    yield request.param
    for flavor, floatx in previous.items():
        keras_twin.set_floatx(flavor, floatx)


@pytest.fixture
def float64_keras():
    """Both Kerases in float64 for one test."""
    from npembed import keras_twin
    previous = {flavor: keras_twin.set_floatx(flavor, "float64") for flavor in keras_twin.FLAVORS}
    yield
    for flavor, floatx in previous.items():
        keras_twin.set_floatx(flavor, floatx)


@pytest.fixture(params=["keras3", "tf_keras"])
def flavor(request):
    """The Keras to compare with: Keras 3, or the tutorial's Keras 2 (tf_keras).  npembed runs
    the Adam variant that reproduces it (``keras_twin.ADAM_VARIANT``)."""
    return request.param


@pytest.fixture(scope="session")
def trained_weights(imdb, real_batches):
    """npembed's float32 weights and Adam state after the tutorial's training (10 epochs, keras2
    Adam; about 10 s each), masked and unmasked: confident predictions, |logit| > 15 on some of the real
    batches, and moments that are no longer zero."""
    import npembed
    weights = {}
    for mask_zero in (False, True):
        model = npembed.tutorial_model(seed=0, mask_zero=mask_zero)
        model.compile()
        model.fit(imdb.train.batches(10, shuffle_buffer=1000, seed=5), epochs=10, verbose=0)
        logits = np.concatenate([model(ids)[:, 0] for ids, _ in real_batches[:20]])
        assert np.abs(logits).max() > 15, "the trained model must be confident somewhere"
        weights[mask_zero] = (model.get_weights(), model.optimizer.state())
    return weights


@pytest.fixture(params=["fresh", "trained"])
def weights_kind(request):
    return request.param


@pytest.fixture(scope="session")
def real_batches(imdb):
    """The first 300 batches of the tutorial's pipeline (shuffle(1000).padded_batch(10), seed 0)."""
    return list(imdb.train.batches(batch_size=10, shuffle_buffer=1000, seed=0).for_epoch(0))[:300]


@pytest.fixture(scope="session")
def edge_batches(imdb):
    """Synthetic edge cases built from real reviews (name -> (ids, labels))."""
    train = imdb.train
    longest = int(np.argmax(train.lengths))
    short = np.argsort(train.lengths)[:4]
    one = train.padded(np.array([7]))
    mostly_padding = train.padded(np.concatenate([short, [longest]]))
    repeated = np.full((3, 50), int(train.review(0)[0]), dtype=np.int64)
    repeated[1, 30:] = 0
    return {
        "batch_of_one": (one, train.labels[[7]]),
        "mostly_padding_and_longest_review": (mostly_padding, train.labels[np.concatenate([short, [longest]])]),
        "one_token_repeated": (repeated, np.array([1, 0, 1])),
    }
