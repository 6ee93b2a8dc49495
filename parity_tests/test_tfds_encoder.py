"""npembed's pure-Python encoder against tfds's SubwordTextEncoder, on the real reviews."""
from __future__ import annotations

import numpy as np
import pytest

from npembed.datasets import SubwordEncoder
from npembed.datasets.sources import read_reviews, resolve_source


@pytest.fixture(scope="module")
def tfds_encoder(imdb, tmp_path_factory):
    import tensorflow_datasets as tfds
    prefix = tmp_path_factory.mktemp("vocab") / "subwords8k"
    imdb.encoder.save_to_file(prefix)
    return tfds.deprecated.text.SubwordTextEncoder.load_from_file(str(prefix))


@pytest.fixture(scope="module")
def reviews(imdb):
    return read_reviews(resolve_source(str(imdb.source.path)))


def test_file_format_is_tfds(tfds_encoder, imdb):
    assert tfds_encoder.vocab_size == imdb.encoder.vocab_size == 8185
    assert tfds_encoder.subwords == imdb.encoder.subwords


def compare(tfds_encoder, imdb, reviews, split, indices):
    encoded = imdb.split(split)
    for i in indices:
        text = reviews[split][i].text
        expected = tfds_encoder.encode(text)
        np.testing.assert_array_equal(encoded.review(i), expected, err_msg=reviews[split][i].key)
        assert imdb.encoder.decode(expected) == tfds_encoder.decode(expected)


def test_ids_equal_tfds_on_thousands_of_reviews(tfds_encoder, imdb, reviews):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        compare(tfds_encoder, imdb, reviews, split, rng.choice(25_000, 1500, replace=False))


@pytest.mark.slow
def test_ids_equal_tfds_on_all_50000_reviews(tfds_encoder, imdb, reviews):
    for split in ("train", "test"):
        compare(tfds_encoder, imdb, reviews, split, range(25_000))


def test_odd_strings_encode_like_tfds(tfds_encoder, imdb):
    for text in ["snake_case", "a \\&undsc b", "\\&undsc", "__init__", "naïve 東京 🎬", "x\u0085y",
                 "<br /><br />", "   ", "tab\there", "A" * 300]:
        assert imdb.encoder.encode(text) == tfds_encoder.encode(text), text
        ids = tfds_encoder.encode(text)
        assert imdb.encoder.decode(ids) == tfds_encoder.decode(ids), text


def test_encoder_built_from_a_corpus_equals_tfds_build():
    import tensorflow_datasets as tfds
    corpus = ["the cat sat on the mat", "the dog sat on the log", "cats and dogs_are friends",
              "a \\&undsc b", "naïve café"] * 20
    ours = SubwordEncoder.build_from_corpus(corpus, 300)
    theirs = tfds.deprecated.text.SubwordTextEncoder.build_from_corpus(corpus, 300)
    assert ours.subwords == theirs.subwords
