"""An encoded split as ragged arrays, and the tutorial's ``shuffle(1000).padded_batch(10)``.

A split is stored as one flat id array plus offsets (review i is ``ids[offsets[i]:offsets[i+1]]``),
so that a batch is cut out and zero-padded with a few vectorised NumPy operations.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np


@dataclasses.dataclass
class EncodedSplit:
    """One split: ``ids`` (total_tokens,) int32, ``offsets`` (n + 1,) int64, ``labels`` (n,) int8,
    ``keys`` (n,) the reviews' aclImdb paths (or tfds indices), in the split's stored order."""

    name: str
    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    keys: np.ndarray

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        """(n,) review lengths in subwords."""
        return np.diff(self.offsets)

    def review(self, index: int) -> np.ndarray:
        """The ids of review ``index`` (a view, no padding)."""
        return self.ids[self.offsets[index]:self.offsets[index + 1]]

    def padded(self, rows: np.ndarray) -> np.ndarray:
        """Reviews ``rows`` as a (len(rows), longest) int64 array, zero-padded on the right."""
        return pad_rows(self.ids, self.offsets, rows)

    def batches(self, batch_size: int = 10, shuffle_buffer: int | None = 1000, seed: int = 0,
                drop_remainder: bool = False) -> "Batches":
        """``shuffle(shuffle_buffer).padded_batch(batch_size)``: see :class:`Batches`."""
        return Batches(self, batch_size, shuffle_buffer, seed, drop_remainder)


class Batches:
    """A re-iterable of ``(ids (B, L) int64, labels (B,) int8)``, like a tf.data dataset.

    Each iteration is one epoch, reshuffled: epoch ``e`` (counted from 0, one per ``iter``) uses
    ``numpy.random.default_rng((seed, e))``, so a run is deterministic for a seed and any epoch
    can be regenerated on its own (``for_epoch(e)``, which is what resuming a run needs).
    ``shuffle_buffer=None`` (or 0) keeps the stored order, as a dataset without ``shuffle``.
    """

    def __init__(self, split: EncodedSplit, batch_size: int, shuffle_buffer: int | None,
                 seed: int, drop_remainder: bool):
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if shuffle_buffer is not None and (int(shuffle_buffer) != shuffle_buffer or shuffle_buffer < 0):
            raise ValueError(f"shuffle_buffer must be a non-negative integer or None, got {shuffle_buffer!r}")
        self.split = split
        self.batch_size = int(batch_size)
        self.shuffle_buffer = int(shuffle_buffer or 0)
        self.seed = seed
        self.drop_remainder = drop_remainder
        self.next_epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(len(self.split), self.batch_size)
        return full + (0 if self.drop_remainder or rest == 0 else 1)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch = self.next_epoch
        self.next_epoch += 1
        return self.for_epoch(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The review indices of epoch ``epoch``, in the order they are batched."""
        if self.shuffle_buffer <= 1:
            return np.arange(len(self.split))
        return buffer_shuffle(len(self.split), self.shuffle_buffer, np.random.default_rng((self.seed, epoch)))

    def for_epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of epoch ``epoch``, from batch ``start_step`` on."""
        order = self.order(epoch)
        stop = len(self) * self.batch_size
        for begin in range(start_step * self.batch_size, min(stop, len(order)), self.batch_size):
            rows = order[begin:begin + self.batch_size]
            yield self.split.padded(rows), self.split.labels[rows]


def buffer_shuffle(n: int, buffer_size: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which tf.data's ``shuffle(buffer_size)`` emits elements 0..n-1.

    Fill a buffer with the first ``buffer_size`` elements; then repeatedly draw a slot uniformly,
    emit its element and refill the slot with the next input; once the input is exhausted, draw
    uniformly among what is left.  (TensorFlow's random stream itself cannot be reproduced; the
    algorithm, and so the statistics of the order, are the same: an element can only move
    about ``buffer_size`` places earlier.)
    """
    size = min(buffer_size, n)
    buffer = list(range(size))
    next_input = size
    out = np.empty(n, dtype=np.int64)
    steady = rng.integers(0, size, n - size)          # draws while the input lasts
    tail = rng.random(size)                           # draws while the buffer drains
    for i, slot in enumerate(steady):
        out[i] = buffer[slot]
        buffer[slot] = next_input
        next_input += 1
    for i in range(size):
        slot = int(tail[i] * len(buffer))
        out[n - size + i] = buffer[slot]
        buffer[slot] = buffer[-1]
        buffer.pop()
    return out


def pad_rows(ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Reviews ``rows`` of a ragged (ids, offsets) pair as a zero-padded (B, longest) int64 array.

    No per-token loop: the positions of every real token are computed as one index array.
    """
    rows = np.asarray(rows)
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    columns = np.arange(int(lengths.max()) if rows.size else 0)
    is_token = columns < lengths[:, None]                            # (B, longest)
    batch = np.zeros(is_token.shape, dtype=np.int64)
    batch[is_token] = ids[(starts[:, None] + columns)[is_token]]
    return batch
