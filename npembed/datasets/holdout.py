"""A validation split carved from the training reviews, so that no choice looks at the test set.

``holdout(train, size, seed)`` draws ``size`` reviews of ``train`` without replacement, with
``numpy.random.default_rng(seed)``, and returns (the rest, the drawn ones), each in the stored
order of ``train``.  The same (split, size, seed) always gives the same two splits.
"""
from __future__ import annotations

import numpy as np

from npembed.datasets.batching import EncodedSplit
from npembed.errors import UsageError


def subset(split: EncodedSplit, rows: np.ndarray, name: str) -> EncodedSplit:
    """Reviews ``rows`` (ascending indices) of ``split`` as a split of their own, named ``name``."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size > 1 and np.any(np.diff(rows) <= 0):
        raise ValueError("subset: rows must be ascending and distinct")
    chosen = np.zeros(len(split), dtype=bool)
    chosen[rows] = True
    lengths = split.lengths[rows]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # one bool per position (not an int64 index per position: 23M n-gram ids would need 185 MB
    # per index array); the chosen reviews' ids, in order
    return EncodedSplit(name, split.ids[np.repeat(chosen, split.lengths)], offsets, split.labels[rows],
                        split.keys[rows])


def held_out_mask(count: int, size: int, seed: int) -> np.ndarray:
    """(count,) bool: True for the ``size`` reviews ``holdout`` holds out of ``count``."""
    held = np.zeros(count, dtype=bool)
    held[np.random.default_rng(seed).choice(count, size=size, replace=False)] = True
    return held


def holdout(train: EncodedSplit, size: int, seed: int) -> tuple[EncodedSplit, EncodedSplit]:
    """(train without the held-out reviews, the ``size`` held-out reviews named "validation")."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size < len(train):
        raise UsageError(f"--validation-reviews must be an integer from 1 to {len(train) - 1} "
                         f"(the training split has {len(train):,} reviews), got {size!r}")
    held = held_out_mask(len(train), size, seed)
    return subset(train, np.flatnonzero(~held), train.name), subset(train, np.flatnonzero(held), "validation")
