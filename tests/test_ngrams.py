"""Hashed n-grams (datasets/ngrams.py) and the validation split (datasets/holdout.py)."""
from __future__ import annotations

import numpy as np
import pytest

from npembed.datasets.batching import EncodedSplit
from npembed.datasets.holdout import holdout, subset
from npembed.datasets.ngrams import (MULTIPLIER, distinct_per_review, load_ngram_split, ngram_hashes,
                                     ngram_split)
from npembed.errors import NpembedError

V = 50


def fasttext_hash(tokens) -> int:
    """fastText's Dictionary::addWordNgrams, one n-gram, in Python integers mod 2**64."""
    h = int(tokens[0])
    for token in tokens[1:]:
        h = (h * int(MULTIPLIER) + int(token)) % 2 ** 64
    return h


def toy_split(lengths=(5, 1, 3, 2, 7), seed=0) -> EncodedSplit:
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(1, V, int(offsets[-1])).astype(np.int32)
    labels = (np.arange(len(lengths)) % 2).astype(np.int8)
    return EncodedSplit("train", ids, offsets, labels, np.array([f"r{i}" for i in range(len(lengths))]))


def reference_ngram_review(tokens, n, buckets):
    out = list(tokens)
    for k in range(2, n + 1):
        out += [V + fasttext_hash(tokens[i:i + k]) % buckets for i in range(len(tokens) - k + 1)]
    return out


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("buckets", [7, 1000, 2_000_000])
def test_ngram_split_matches_fasttext_one_review_at_a_time(n, buckets):
    split = toy_split()
    out = ngram_split(split, n, buckets, V)
    for i in range(len(split)):
        assert out.review(i).tolist() == reference_ngram_review(split.review(i).tolist(), n, buckets)
    assert out.labels is split.labels and out.ids.dtype == np.int32


def test_hashes_wrap_like_uint64_and_are_deterministic():
    big = np.array([2 ** 31 - 1, 2 ** 31 - 2, 2 ** 31 - 3, 5])
    assert ngram_hashes(big, 3).tolist() == [fasttext_hash(big[i:i + 3]) for i in range(2)]
    split = toy_split(seed=3)
    first, again = ngram_split(split, 3, 101, V), ngram_split(split, 3, 101, V)
    assert np.array_equal(first.ids, again.ids) and np.array_equal(first.offsets, again.offsets)


def test_order_matters_and_collisions_share_a_row():
    """(a, b) and (b, a) are different n-grams; with one bucket every n-gram collides."""
    assert ngram_hashes(np.array([3, 4]), 2)[0] != ngram_hashes(np.array([4, 3]), 2)[0]
    split = toy_split()
    one_bucket = ngram_split(split, 2, 1, V)
    grams = np.concatenate([one_bucket.review(i)[len(split.review(i)):] for i in range(len(split))])
    assert grams.size == sum(max(length - 1, 0) for length in split.lengths) and set(grams) == {V}


def test_bigram_collisions_at_the_default_bucket_count_are_few():
    """Of 20,000 distinct random bigrams hashed into 2,000,000 buckets, about 100 pairs should
    share a row (birthday bound n^2 / 2B); far more would mean a poor hash."""
    rng = np.random.default_rng(0)
    pairs = np.unique(rng.integers(1, 8185, (20_000, 2)), axis=0)
    rows = ngram_hashes(pairs.ravel(), 2)[::2] % 2_000_000
    collisions = pairs.shape[0] - np.unique(rows).size
    assert collisions < 3 * pairs.shape[0] ** 2 / (2 * 2_000_000)


@pytest.mark.parametrize("n, buckets, message", [
    (0, 10, "--ngrams must be an integer from 1"), (6, 10, "--ngrams"), (True, 10, "--ngrams"),
    (2, 0, "--buckets must be an integer >= 1"), (2, 2.5, "--buckets"), (2, 2 ** 31, "fit int32"),
])
def test_bad_options_are_clear_errors(n, buckets, message):
    with pytest.raises(NpembedError, match=message):
        ngram_split(toy_split(), n, buckets, V)


def test_cache_is_keyed_by_settings_and_rebuilt_when_damaged(tmp_path):
    split = toy_split()
    first = load_ngram_split(split, 2, 97, V, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ngrams-n2-b97-v1"]
    assert np.array_equal(load_ngram_split(split, 2, 97, V, tmp_path).ids, first.ids)
    other = load_ngram_split(split, 3, 97, V, tmp_path)            # another key, another folder
    assert len(list(tmp_path.iterdir())) == 2 and other.ids.size > first.ids.size
    cached = tmp_path / "ngrams-n2-b97-v1" / "train.npz"
    cached.write_bytes(b"damaged")
    assert np.array_equal(load_ngram_split(split, 2, 97, V, tmp_path).ids, first.ids)
    # a cache written for other reviews (same name and settings) is not used
    shorter = toy_split(lengths=(5, 1, 3, 2))
    assert len(load_ngram_split(shorter, 2, 97, V, tmp_path)) == 4


def test_holdout_is_seeded_disjoint_and_complete():
    split = toy_split(lengths=np.arange(1, 41))
    rest, held = holdout(split, 10, seed=1)
    again_rest, again_held = holdout(split, 10, seed=1)
    assert np.array_equal(held.keys, again_held.keys) and np.array_equal(rest.ids, again_rest.ids)
    assert len(held) == 10 and len(rest) == 30 and held.name == "validation"
    assert sorted([*held.keys, *rest.keys]) == sorted(split.keys)
    index = {key: i for i, key in enumerate(split.keys)}
    for part in (held, rest):
        for i, key in enumerate(part.keys):
            assert np.array_equal(part.review(i), split.review(index[key]))
    assert not np.array_equal(holdout(split, 10, seed=2)[1].keys, held.keys)


@pytest.mark.parametrize("size", [0, 40, -1, 2.5])
def test_holdout_refuses_bad_sizes(size):
    with pytest.raises(NpembedError, match="--validation-reviews"):
        holdout(toy_split(lengths=np.arange(1, 41)), size, seed=0)


def test_subset_keeps_order():
    split = toy_split()
    part = subset(split, np.array([1, 3]), "x")
    assert part.review(0).tolist() == split.review(1).tolist() and part.review(1).tolist() == split.review(3).tolist()


def test_distinct_per_review_keeps_each_id_once_at_its_first_position():
    """Binarised features (tried in the search): per review, the ids of the first occurrences in
    order; an id repeated across reviews stays in each; an empty review stays empty."""
    rng = np.random.default_rng(3)
    lengths = np.array([7, 0, 1, 12, 5])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(1, 6, int(offsets[-1])).astype(np.int32)
    split = EncodedSplit("train", ids, offsets, np.array([1, 0, 1, 0, 1]), np.arange(5).astype(str))
    distinct = distinct_per_review(split)
    for b in range(len(split)):
        review = list(split.review(b))
        expected = [x for i, x in enumerate(review) if x not in review[:i]]
        assert list(distinct.review(b)) == expected
    np.testing.assert_array_equal(distinct.labels, split.labels)
    assert distinct.ids.dtype == split.ids.dtype and distinct.lengths[1] == 0
