"""Hashed n-grams of token ids, as fastText adds them, computed once per split and cached.

fastText (facebookresearch/fastText, ``src/dictionary.cc``, ``Dictionary::addWordNgrams``)
gives every n-gram of a line's token ids ``x_i .. x_{i+k-1}`` (2 <= k <= n) the row

    h = x_i;  h = h * 116049371 + x_{i+1};  ...;  h = h * 116049371 + x_{i+k-1}   (uint64, wrapping)
    row = V + h mod buckets

after the V rows of the vocabulary, so a table of ``V + buckets`` rows holds the tokens and
the n-grams.  Different n-grams can share a row (a collision): with buckets much larger than
the number of distinct n-grams, few do.  Here ``x`` are the subword ids (1 .. V-1; 0 is the
padding id and never part of an n-gram), and a review's ids become

    [its L token ids,  its L-1 bigram rows,  its L-2 trigram rows (n = 3), ...]

with no n-gram across two reviews.  ``ngram_split`` does this for a whole ``EncodedSplit`` with
one vectorised pass per order (no per-review loop); ``load_ngram_split`` caches the result next
to the encoded splits (``<cache folder>/ngrams-n<n>-b<buckets>-v<FORMAT>/<split>.npz``, written
atomically and checksummed like them, so a change of settings is a different file).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from npembed.datasets.batching import EncodedSplit
from npembed.datasets.cache import Cache
from npembed.errors import UsageError

MULTIPLIER = np.uint64(116049371)      # fastText's Dictionary::addWordNgrams
FORMAT = 1
MAX_N = 5
MAX_ROWS = 2 ** 31 - 1                 # ids are stored as int32


def check_ngram_options(n: int, buckets: int, vocab_size: int) -> None:
    """Raise UsageError, naming the option as the CLI spells it, for a bad n or bucket count."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_N:
        raise UsageError(f"--ngrams must be an integer from 1 (tokens only) to {MAX_N}, got {n!r}")
    if isinstance(buckets, bool) or not isinstance(buckets, (int, np.integer)) or buckets < 1:
        raise UsageError(f"--buckets must be an integer >= 1 (rows for the hashed n-grams), got {buckets!r}")
    if vocab_size + buckets > MAX_ROWS:
        raise UsageError(f"--buckets {buckets} makes a table of {vocab_size + buckets:,} rows; "
                         f"at most {MAX_ROWS - vocab_size:,} buckets fit int32 ids")


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """fastText's hash of the n-gram starting at each position of one token sequence.

    ids (L,) ints -> (L - n + 1,) uint64: ``h[i] = fold(x_i, .., x_{i+n-1})`` as in the module
    docstring (before ``mod buckets``).  The plain definition, one position at a time, is in
    the tests; this is the same recurrence over all positions at once.
    """
    ids = np.asarray(ids).astype(np.uint64)
    count = ids.shape[0] - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = ids[:count].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            h *= MULTIPLIER
            h += ids[k:k + count]
    return h


def ngram_split(split: EncodedSplit, n: int, buckets: int, vocab_size: int) -> EncodedSplit:
    """``split`` with each review's hashed 2..n-grams appended to its ids (module docstring).

    split.ids (T,) in [1, V) -> ids (T',) int32 in [1, V + buckets), offsets (N + 1,), the same
    labels and keys; T' = sum over reviews of L + (L-1)+ + ... + (L-n+1)+.
    """
    check_ngram_options(n, buckets, vocab_size)
    ids = split.ids.astype(np.uint64)
    offsets = split.offsets.astype(np.int64)
    lengths = np.diff(offsets)
    review = np.repeat(np.arange(len(split)), lengths)             # (T,) review of each position
    position = np.arange(ids.shape[0]) - offsets[review]           # (T,) index within its review
    per_order = [np.maximum(lengths - k + 1, 0) for k in range(1, n + 1)]   # grams of order k per review
    new_lengths = np.sum(per_order, axis=0)
    new_offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
    out = np.empty(int(new_offsets[-1]), dtype=np.int32)
    before = np.zeros(len(split), dtype=np.int64)                  # grams of lower orders, per review
    h = ids.copy()
    with np.errstate(over="ignore"):
        for k in range(1, n + 1):
            if k > 1:   # extend the (k-1)-gram starting at each position by the token k-1 later
                h *= MULTIPLIER
                h[:-(k - 1)] += ids[k - 1:]
            valid = position + k <= lengths[review]                 # the k-gram stays in the review
            target = new_offsets[review[valid]] + before[review[valid]] + position[valid]
            out[target] = ids[valid] if k == 1 else (h[valid] % np.uint64(buckets)) + np.uint64(vocab_size)
            before += per_order[k - 1]
    return EncodedSplit(split.name, out, new_offsets, split.labels, split.keys)


def distinct_per_review(split: EncodedSplit) -> EncodedSplit:
    """``split`` with each review's repeated ids dropped: every id once, at its first position.

    The bag of features becomes a set (Wang & Manning's binarised features): a review's average
    is then over its distinct tokens and n-grams.  ids (T,) -> (T',) in the same order, T' <= T;
    offsets renumbered; labels and keys unchanged.  One sort of (review, id) keys, no loop.
    """
    lengths = split.lengths
    review = np.repeat(np.arange(len(split), dtype=np.int64), lengths)
    key = review * np.int64(int(split.ids.max(initial=0)) + 1) + split.ids
    _, first = np.unique(key, return_index=True)
    first.sort()                                                   # back to position order
    kept = np.bincount(review[first], minlength=len(split))
    offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
    return EncodedSplit(split.name, split.ids[first], offsets, split.labels, split.keys)


class NgramCache(Cache):
    """The cached n-gram splits of one encoded-data cache folder, for one (n, buckets)."""

    def __init__(self, data_folder: str | Path, n: int, buckets: int):
        self.folder = Path(data_folder) / f"ngrams-n{n}-b{buckets}-v{FORMAT}"


def load_ngram_split(split: EncodedSplit, n: int, buckets: int, vocab_size: int,
                     data_folder: str | Path | None) -> EncodedSplit:
    """``ngram_split(split, ...)``, read from the cache when there, else built and cached.

    ``data_folder`` is the encoded splits' cache folder (``ImdbSubwords8k.cache_folder``, keyed
    by the input and the vocabulary); None (tfds, tests) builds without caching.  The cached
    file is keyed by the split's name and (n, buckets); its offsets are checked against the
    split's lengths, so a stale file for other reviews is rebuilt, never used.
    """
    check_ngram_options(n, buckets, vocab_size)
    if data_folder is None:
        return ngram_split(split, n, buckets, vocab_size)
    cache = NgramCache(data_folder, n, buckets)
    cached = cache.load_split(split.name)
    if cached is not None and _matches(cached, split, n, vocab_size + buckets):
        return cached
    built = ngram_split(split, n, buckets, vocab_size)
    with cache.locked():
        cache.save_split(built)
    return built


def _matches(cached: EncodedSplit, split: EncodedSplit, n: int, rows: int) -> bool:
    """Whether ``cached`` is the n-gram split of ``split``: its labels, its lengths, offsets
    that cut all its ids, and ids that are rows of the table (an edited file whose checksum
    was recomputed is rebuilt: out-of-range ids must never reach a kernel)."""
    if len(cached) != len(split) or not np.array_equal(cached.labels, split.labels):
        return False
    ids, offsets = cached.ids, cached.offsets
    if ids.ndim != 1 or offsets.shape != split.offsets.shape or offsets[0] != 0 or offsets[-1] != ids.shape[0]:
        return False
    if ids.shape[0] and (ids.min() < 1 or ids.max() >= rows):
        return False
    lengths = split.lengths
    expected = sum(np.maximum(lengths - k + 1, 0) for k in range(1, n + 1))
    return bool(np.array_equal(cached.lengths, expected))
