"""Fixtures for the Keras parity suite: TensorFlow (or a skip/failure), real subword batches.

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
from conftest import imdb, real_data_path  # noqa: E402,F401  (the shared real-data fixture)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _require_tensorflow():
    try:
        import tensorflow  # noqa: F401
        import keras  # noqa: F401
    except ImportError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the parity tests, but TensorFlow is missing: {err}. "
                        "make test installs it: pip install -e '.[all]'")
        pytest.skip(f"parity tests need TensorFlow and Keras 3 (pip install 'npembed[tensorflow]'): {err}")


@pytest.fixture(scope="session", autouse=True)
def tensorflow_available():
    _require_tensorflow()


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Run a test in float32 and in float64; Keras's floatx follows, since its loss and metrics
    use floatx rather than the layers' dtype."""
    import keras
    previous = keras.config.floatx()
    keras.config.set_floatx(request.param)
    yield request.param
    keras.config.set_floatx(previous)


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
