"""``--data tfds``: the tutorial's ``imdb_reviews/subwords8k``, built and read by tfds itself.

Needs ``pip install 'npembed[tensorflow]'``.  tfds 4.9 dropped the ``subwords8k`` config and its
``tfds.load`` refuses deprecated text encoders, so npembed drives tfds's own ``imdb_reviews``
builder with the config restored (``tfds_local.py``): the first use downloads the official
archive and prepares the dataset in tfds's data folder (``~/tensorflow_datasets``); later uses
read it from there.
"""
from __future__ import annotations

import socket

import numpy as np

from npembed.datasets.batching import EncodedSplit
from npembed.datasets.dataset import ImdbSubwords8k
from npembed.datasets.sources import SPLITS, DataError, DataSource
from npembed.datasets.subwords import SubwordEncoder


def load_from_tfds(progress: bool = True, data_dir: str | None = None):
    """``imdb_reviews/subwords8k`` through tfds's own builder (``tfds_local``): prepared on first
    use from the official download (needs internet), then read from tfds's data folder."""
    from npembed.datasets.tfds_local import OFFICIAL_HOST, subwords8k_builder
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError as err:
        raise DataError("--data tfds needs tensorflow-datasets: pip install 'npembed[tensorflow]'") from err
    try:
        builder = subwords8k_builder(data_dir)
        if not builder.is_prepared():
            try:   # fail at once offline, rather than after tfds's minutes of retries
                socket.getaddrinfo(OFFICIAL_HOST, 80)
            except OSError as err:
                raise DataError(f"--data tfds must download the official archive from {OFFICIAL_HOST} "
                                f"the first time, and that host cannot be reached ({err}); offline, "
                                "pass the aclImdb archive with --data instead") from err
            builder.download_and_prepare()
    except DataError:
        raise
    except Exception as err:  # tfds raises many kinds: network, checksum, disk
        raise DataError(f"tfds could not prepare imdb_reviews/subwords8k: {err}. It downloads the "
                        "official archive the first time (internet needed); offline, pass the "
                        "aclImdb archive with --data instead") from err
    splits = [builder.as_dataset(split=name, as_supervised=True) for name in SPLITS]
    encoder = SubwordEncoder(builder.info.features["text"].encoder.subwords)
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
