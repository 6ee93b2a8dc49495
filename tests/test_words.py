"""The word tokenization for the n-gram search (``datasets/words.py``) and the held-out rows
it shares with ``holdout``."""
from __future__ import annotations

import numpy as np

from npembed.datasets import words
from npembed.datasets.batching import EncodedSplit
from npembed.datasets.holdout import held_out_mask, holdout


def test_tokenize_lowercases_and_strips_breaks_and_punctuation():
    assert words.tokenize(b"Don't!<br /><br />Great... movie, 10/10") == ["dont", "great", "movie", "1010"]
    assert words.tokenize("caf\u00e9 -- OK") == ["caf\u00e9", "ok"]
    assert words.tokenize(b"<br />!!!") == []


def test_vocabulary_is_by_count_then_alphabetical_from_id_2():
    vocabulary = words.build_vocabulary([["b", "a", "c"], ["c", "b"], ["c", "d"]])
    assert vocabulary == {"c": 2, "b": 3, "a": 4, "d": 5}
    assert words.build_vocabulary([["b", "a", "c"], ["c", "b"]], min_count=2) == {"b": 2, "c": 3}


def test_encode_maps_unknown_words_to_oov_and_keeps_empty_reviews_nonempty():
    vocabulary = {"good": 2, "bad": 3}
    split = words.encode("test", [["good", "film"], [], ["bad"]], vocabulary, np.array([1, 0, 0]),
                         np.array(["a", "b", "c"]))
    assert split.ids.tolist() == [2, words.OOV, words.OOV, 3]
    assert split.offsets.tolist() == [0, 2, 3, 4] and split.labels.tolist() == [1, 0, 0]


def test_held_out_mask_is_the_holdout_of_a_split():
    n = 50
    split = EncodedSplit("train", np.arange(1, n + 1, dtype=np.int32), np.arange(n + 1, dtype=np.int64),
                         np.zeros(n, dtype=np.int8), np.arange(n).astype(str))
    kept, held = holdout(split, 7, seed=3)
    mask = held_out_mask(n, 7, seed=3)
    assert mask.sum() == 7
    assert held.keys.tolist() == split.keys[mask].tolist() and kept.keys.tolist() == split.keys[~mask].tolist()
