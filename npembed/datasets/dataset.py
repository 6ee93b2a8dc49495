"""``ImdbSubwords8k``: what every data source yields, the encoder and both encoded splits.

Its own module so that the sources (``imdb.py`` for archives and folders, ``tfds_source.py``
for tfds) can both build one without importing each other.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from npembed.datasets.batching import EncodedSplit
from npembed.datasets.sources import SPLITS, DataSource
from npembed.datasets.subwords import SubwordEncoder


@dataclasses.dataclass
class ImdbSubwords8k:
    """The encoder and both splits (25,000 reviews each for the real data)."""

    encoder: SubwordEncoder
    train: EncodedSplit
    test: EncodedSplit
    source: DataSource
    cache_folder: Path | None = None

    def split(self, name: str) -> EncodedSplit:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)
