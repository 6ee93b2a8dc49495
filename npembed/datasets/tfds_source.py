"""``--data tfds``: the tutorial's own ``tfds.load('imdb_reviews/subwords8k')``.

Needs ``pip install 'npembed[tensorflow]'``.  tfds 4.9 no longer defines the ``subwords8k``
config, so tfds can only *read* a prepared copy: one in its data folder (``~/tensorflow_datasets``
or the folder ``tfds_local.prepare_tfds_subwords8k`` prepared), or, with internet, tfds's
pre-built copy on its public bucket (``try_gcs=True``).  tfds keeps its own cache.
"""
from __future__ import annotations

import numpy as np

from npembed.datasets.batching import EncodedSplit
from npembed.datasets.sources import SPLITS, DataError, DataSource
from npembed.datasets.subwords import SubwordEncoder


def load_from_tfds(progress: bool = True, data_dir: str | None = None, download: bool = True):
    from npembed.datasets.imdb import ImdbSubwords8k
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError("--data tfds needs tensorflow-datasets: pip install 'npembed[tensorflow]'") from err
    try:
        splits, info = tfds.load("imdb_reviews/subwords8k", split=list(SPLITS), with_info=True,
                                 as_supervised=True, data_dir=data_dir, download=download, try_gcs=True)
    except Exception as err:  # tfds raises many kinds: network, checksum, missing data
        raise DataError(f"tfds.load('imdb_reviews/subwords8k') failed: {err}. tfds 4.9 can only read "
                        "a prepared copy of this config (from its data folder, or online from its "
                        "bucket); otherwise pass the aclImdb archive with --data") from err
    encoder = SubwordEncoder(info.features["text"].encoder.subwords)
    encoded = [tfds_split_to_encoded(name, dataset) for name, dataset in zip(SPLITS, splits)]
    return ImdbSubwords8k(encoder, *encoded, source=DataSource("tfds"))


def tfds_split_to_encoded(name: str, dataset) -> EncodedSplit:
    """A tfds split of (ids, label) pairs -> EncodedSplit, in the dataset's order."""
    reviews, labels = [], []
    for ids, label in dataset.as_numpy_iterator():
        reviews.append(np.asarray(ids, dtype=np.int32))
        labels.append(int(label))
    offsets = np.concatenate([[0], np.cumsum([r.size for r in reviews])]).astype(np.int64)
    return EncodedSplit(name, np.concatenate(reviews), offsets, np.array(labels, dtype=np.int8),
                        np.array([f"tfds:{name}[{i}]" for i in range(len(reviews))]))
