"""A second tokenization for the n-gram model: words, as Keras's ``TextVectorization`` makes them.

``TextVectorization``'s default standardisation is ``lower_and_strip_punctuation``; IMDB's
reviews also hold ``<br />`` line breaks.  Here, by hand::

    text -> lowercase -> "<br />" becomes a space -> every ASCII punctuation character removed
         -> split on white space

("Don't!<br />Great." -> ["dont", "great"]).  The vocabulary is built from the training reviews
it is given (not the validation or test reviews): ids 2, 3, ... by descending count (ties in
alphabetical order), 0 the padding and 1 the out-of-vocabulary id, as ``TextVectorization``
numbers them; words seen fewer than ``min_count`` times map to 1.  ``encode`` gives an
``EncodedSplit`` like the subword splits (same review order, labels and keys), which the n-gram
hashing (``datasets/ngrams.py``) takes as it is.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from npembed.datasets.batching import EncodedSplit

PAD, OOV = 0, 1
_PUNCTUATION = re.compile("[" + re.escape(string.punctuation) + "]")


def tokenize(text: bytes | str) -> list[str]:
    """The words of one review (module docstring)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return _PUNCTUATION.sub("", text.lower().replace("<br />", " ")).split()


def build_vocabulary(token_lists: Iterable[Sequence[str]], min_count: int = 1) -> dict[str, int]:
    """word -> id (>= 2) by descending count, ties alphabetical; words below min_count left out."""
    counts = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    kept = sorted((word for word, count in counts.items() if count >= min_count), key=lambda w: (-counts[w], w))
    return {word: index + 2 for index, word in enumerate(kept)}


def encode(name: str, token_lists: Sequence[Sequence[str]], vocabulary: dict[str, int],
           labels: np.ndarray, keys: np.ndarray) -> EncodedSplit:
    """The reviews' word ids (OOV for unknown words) as an EncodedSplit; an empty review gets
    one OOV id, so that every review has a token to average."""
    ids = [[vocabulary.get(word, OOV) for word in tokens] or [OOV] for tokens in token_lists]
    lengths = np.array([len(review) for review in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.fromiter((i for review in ids for i in review), dtype=np.int32, count=int(offsets[-1]))
    return EncodedSplit(name, flat, offsets, np.asarray(labels, dtype=np.int8), np.asarray(keys))
