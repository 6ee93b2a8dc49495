"""The on-disk cache of the vocabulary and the encoded splits.

Layout: ``<cache_dir>/imdb_subwords8k/<input sha256[:16]>-v<FORMAT>/`` holding

    vocab.subwords          the encoder, in tfds's file format
    train.npz, test.npz     ids, offsets, labels, keys of each split
    <file>.sha256           the sha256 of each file above, written after it

A process that builds the folder holds its lock (locks.py) meanwhile; a second one waits, then
finds it built.  Every file is written atomically; a file counts as present only when its ``.sha256`` exists and
matches, so a cache cut short or corrupted is detected on load and rebuilt, never half-used.
A change of input changes the folder (the input's sha256 is in its name), and so does a change
of the encoding code (FORMAT).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from npembed.atomic import atomic_save_npz, atomic_write_text
from npembed.cachedir import default_cache_dir, expand_path  # noqa: F401  (re-exported: callers import it from here)
from npembed.datasets.batching import EncodedSplit

# 2: the vocabulary is built by subwords_fast.FastBuilder and the reviews encoded by
#    subwords_fast.encode_texts (issue #14); tested equal to the reference, but a cache written by
#    other code is not trusted to be what this code writes.
FORMAT = 2

# The archives whose review counts are known (sha256 -> reviews per split): a checksum that was
# recomputed after a split was cut down cannot hide it for these.
KNOWN_INPUTS = {
    "a6afd422344f4d0b88759fdb93b2f9304b47060344926bea53f841f31abc2580": 25_000,   # aclImdb_labeled.tar.gz
    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe": 25_000,   # aclImdb_v1.tar.gz
}


class Cache:
    """One input's cache folder."""

    def __init__(self, cache_dir: str | os.PathLike | None, input_id: str):
        # "" is unset, as for $NPEMBED_CACHE (not the current folder)
        root = expand_path(cache_dir, "cache folder") if cache_dir not in (None, "") else default_cache_dir()
        self.folder = root / "imdb_subwords8k" / f"{input_id[:16]}-v{FORMAT}"
        self.expected_reviews = KNOWN_INPUTS.get(input_id)

    def locked(self, on_wait=None):
        """Hold the cache folder's lock (waiting for another writer) while building it; the
        folder is created, and proven writable, first: before minutes of work, not after."""
        from npembed.atomic import writable_folder
        from npembed.locks import locked_folder
        writable_folder(self.folder, "cache folder ($NPEMBED_CACHE or --cache-dir)")
        return locked_folder(self.folder, wait=True, what="cache folder", on_wait=on_wait)

    def path(self, name: str) -> Path:
        return self.folder / name

    def is_valid(self, name: str) -> bool:
        """True when ``name`` and its checksum file exist and agree."""
        path, checksum = self.path(name), self.path(name + ".sha256")
        if not (path.is_file() and checksum.is_file()):
            return False
        return checksum.read_text().strip() == _sha256(path)

    def seal(self, name: str) -> None:
        """Record the checksum of a file just written (atomically), making it valid."""
        atomic_write_text(self.path(name + ".sha256"), _sha256(self.path(name)) + "\n")

    def save_split(self, split: EncodedSplit) -> None:
        name = f"{split.name}.npz"
        atomic_save_npz(self.path(name), ids=split.ids, offsets=split.offsets, labels=split.labels,
                        keys=split.keys, format=np.array(FORMAT))
        self.seal(name)

    def load_split(self, name: str) -> EncodedSplit | None:
        """The cached split, or None when it is missing, corrupt or of another format."""
        file = f"{name}.npz"
        if not self.is_valid(file):
            return None
        try:
            with np.load(self.path(file), allow_pickle=False) as data:
                if int(data["format"]) != FORMAT:
                    return None
                return EncodedSplit(name, data["ids"], data["offsets"], data["labels"], data["keys"])
        except (OSError, ValueError, KeyError):
            return None

    def check_split(self, split: EncodedSplit, vocab_size: int) -> None:
        """DataError unless ``split`` is consistent as this code writes it: a file that passed
        its checksum but not this was edited, with its checksum recomputed (a cut-down split
        would be trained on silently, bad offsets or ids would end in a traceback or worse)."""
        problem = split_problem(split, vocab_size, self.expected_reviews or self._recorded_reviews(split.name))
        if problem:
            from npembed.datasets.sources import DataError
            raise DataError(f"cache file {self.path(split.name + '.npz')} is not what npembed wrote "
                            f"({problem}): it was changed after it was written. Delete the folder "
                            f"{self.folder} and run the command again to rebuild it")

    def _recorded_reviews(self, name: str) -> int | None:
        try:
            count = json.loads(self.path("info.json").read_text())[f"{name}_reviews"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return count if isinstance(count, int) else None

    def write_info(self, info: dict) -> None:
        atomic_write_text(self.path("info.json"), json.dumps(info, indent=2, sort_keys=True) + "\n")


def split_problem(split: EncodedSplit, vocab_size: int, expected_reviews: int | None = None) -> str | None:
    """What makes ``split`` inconsistent (None if nothing): array kinds and lengths, offsets
    from 0 to len(ids) with every review non-empty, ids in [1, vocab_size), labels 0/1 that
    agree with the keys' aclImdb/<split>/<neg|pos>/ folders, keys unique, the expected count."""
    ids, offsets, labels, keys = split.ids, split.offsets, split.labels, split.keys
    n = labels.shape[0] if labels.ndim == 1 else -1
    if any(a.ndim != 1 for a in (ids, offsets, labels, keys)) or offsets.shape[0] != n + 1 or keys.shape[0] != n:
        return "its arrays disagree in shape"
    if not all(np.issubdtype(a.dtype, np.integer) for a in (ids, offsets, labels)) or keys.dtype.kind != "U":
        return "its arrays are of the wrong types"
    if n == 0 or offsets[0] != 0 or offsets[-1] != ids.shape[0] or np.any(np.diff(offsets) < 1):
        return "its offsets do not cut its ids into non-empty reviews"
    if ids.min() < 1 or ids.max() >= vocab_size:
        return f"ids outside 1..{vocab_size - 1}"
    if np.any((labels != 0) & (labels != 1)):
        return "labels other than 0 and 1"
    positive = np.char.startswith(keys, f"aclImdb/{split.name}/pos/")
    negative = np.char.startswith(keys, f"aclImdb/{split.name}/neg/")
    if not np.all(positive | negative) or np.any(positive != (labels == 1)):
        return "labels that disagree with the reviews' folders"
    if np.unique(keys).shape[0] != n:
        return "a review more than once"
    if expected_reviews is not None and n != expected_reviews:
        return f"{n:,} reviews, not {expected_reviews:,}"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
