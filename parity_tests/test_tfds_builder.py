"""tfds's own builder, run on the local archive, against npembed's pipeline, example by example.

tfds builds the subwords8k vocabulary with its SubwordTextEncoder, encodes every review and writes
its shuffled splits (npembed/datasets/tfds_local.py); npembed must produce the same ids, in the
same order, with the same labels: the same batches as ``padded_batch`` over tfds's dataset.
The first run prepares tfds's copy (about three minutes) under the npembed cache.
"""
from __future__ import annotations

import numpy as np
import pytest

from npembed.datasets.cache import default_cache_dir
from npembed.datasets.tfds_source import tfds_split_to_encoded


@pytest.fixture(scope="module")
def tfds_builder(imdb):
    from npembed.datasets.tfds_local import prepare_tfds_subwords8k
    return prepare_tfds_subwords8k(imdb.source.path, default_cache_dir() / "tfds")


def test_tfds_vocabulary_equals_npembeds(tfds_builder, imdb):
    encoder = tfds_builder.info.features["text"].encoder
    assert encoder.vocab_size == 8185
    assert encoder.subwords == imdb.encoder.subwords


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_example_equals_tfds_in_order(tfds_builder, imdb, split):
    theirs = tfds_split_to_encoded(split, tfds_builder.as_dataset(split=split, as_supervised=True))
    ours = imdb.split(split)
    assert len(theirs) == len(ours) == 25_000
    np.testing.assert_array_equal(ours.labels, theirs.labels)
    np.testing.assert_array_equal(ours.offsets, theirs.offsets)
    np.testing.assert_array_equal(ours.ids, theirs.ids)
    # so the unshuffled padded batches are tfds's padded_batch(10), batch for batch
    first = ours.batches(10, shuffle_buffer=None).for_epoch(0)
    expected = tfds_builder.as_dataset(split=split, as_supervised=True).padded_batch(10).take(3)
    for (ids, labels), (tf_ids, tf_labels) in zip(first, expected.as_numpy_iterator()):
        np.testing.assert_array_equal(ids, tf_ids)
        np.testing.assert_array_equal(labels, tf_labels)


def test_data_tfds_reads_a_prepared_copy(tfds_builder, imdb):
    """``--data tfds`` goes through the same builder; with the dataset prepared it needs no network."""
    from npembed.datasets.tfds_source import load_from_tfds
    data = load_from_tfds(progress=False, data_dir=str(default_cache_dir() / "tfds"))
    assert data.encoder.subwords == imdb.encoder.subwords
    np.testing.assert_array_equal(data.test.ids, imdb.test.ids)
    np.testing.assert_array_equal(data.train.labels, imdb.train.labels)
