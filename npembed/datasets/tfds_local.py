"""tfds's own ``imdb_reviews`` builder with its ``subwords8k`` config restored.

tfds 4.9 no longer ships the ``subwords8k`` config (its builder keeps only ``plain_text``) and
refuses to read deprecated text-encoder datasets through ``tfds.load``. This subclass restores
the config exactly as tfds defined it (``SubwordTextEncoder``, ``vocab_size=2**13``), so that tfds
itself builds the vocabulary, encodes every review and writes its shuffled splits:

- from a local aclImdb archive, read with tfds's own ``iter_archive`` (offline; tfds's download
  manager would insist on the official archive's checksum) - the parity tests compare npembed's
  splits with the result example for example;
- or, with no archive given, from the official download, as ``tfds.load`` used to (online).

Needs tensorflow-datasets.
"""
from __future__ import annotations

import os
from pathlib import Path

OFFICIAL_HOST = "ai.stanford.edu"          # where tfds's imdb_reviews builder downloads from


def subwords8k_builder(data_dir: str | os.PathLike | None = None, archive: str | os.PathLike | None = None):
    """A tfds builder for ``imdb_reviews/subwords8k`` (not yet prepared)."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.datasets.imdb_reviews import imdb_reviews_dataset_builder as imdb

    local = str(Path(archive).resolve()) if archive is not None else None

    class Subwords8kImdbReviews(imdb.Builder, skip_registration=True):
        name = "imdb_reviews"
        BUILDER_CONFIGS = [imdb.IMDBReviewsConfig(
            name="subwords8k",
            description="Uses SubwordTextEncoder with 8k vocab size",
            text_encoder_config=tfds.deprecated.text.TextEncoderConfig(
                encoder_cls=tfds.deprecated.text.SubwordTextEncoder, vocab_size=2 ** 13))]

        def _split_generators(self, dl_manager):
            path = local or dl_manager.download(imdb._DOWNLOAD_URL)
            reviews = lambda: dl_manager.iter_archive(path)  # noqa: E731
            self.info.features["text"].maybe_build_from_corpus(self._vocab_text_gen(reviews()))
            return [tfds.core.SplitGenerator(name=split, gen_kwargs={
                        "archive": reviews(), "directory": os.path.join("aclImdb", split)})
                    for split in (tfds.Split.TRAIN, tfds.Split.TEST)]

    return Subwords8kImdbReviews(config="subwords8k", data_dir=None if data_dir is None else str(data_dir))


def prepare_tfds_subwords8k(archive: str | os.PathLike | None, data_dir: str | os.PathLike | None):
    """Build (once; tfds reuses a prepared ``data_dir``) and return the tfds builder."""
    builder = subwords8k_builder(data_dir, archive)
    builder.download_and_prepare()
    return builder
