"""tfds's own ``imdb_reviews`` builder, given the ``subwords8k`` config and a local archive.

tfds 4.9 no longer ships the ``subwords8k`` config (its builder has only ``plain_text``), and its
download manager insists on the official archive's checksum.  This subclass restores the config
exactly as tfds defined it (``SubwordTextEncoder``, ``vocab_size=2**13``) and reads the reviews
from a local aclImdb archive with tfds's own ``iter_archive``, so that tfds itself builds the
vocabulary, encodes every review and writes its shuffled splits.  ``parity_tests`` compare
npembed's splits with the result example for example.  Needs tensorflow-datasets.
"""
from __future__ import annotations

import os
from pathlib import Path


def prepare_tfds_subwords8k(archive: str | os.PathLike, data_dir: str | os.PathLike):
    """Build (once; tfds reuses a prepared ``data_dir``) and return the tfds builder."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.datasets.imdb_reviews import imdb_reviews_dataset_builder as imdb

    archive = str(Path(archive).resolve())

    class LocalImdbReviews(imdb.Builder, skip_registration=True):
        name = "imdb_reviews"
        BUILDER_CONFIGS = [imdb.IMDBReviewsConfig(
            name="subwords8k",
            description="Uses SubwordTextEncoder with 8k vocab size",
            text_encoder_config=tfds.deprecated.text.TextEncoderConfig(
                encoder_cls=tfds.deprecated.text.SubwordTextEncoder, vocab_size=2 ** 13))]

        def _split_generators(self, dl_manager):
            reviews = lambda: dl_manager.iter_archive(archive)  # noqa: E731
            self.info.features["text"].maybe_build_from_corpus(self._vocab_text_gen(reviews()))
            return [tfds.core.SplitGenerator(name=split, gen_kwargs={
                        "archive": reviews(), "directory": os.path.join("aclImdb", split)})
                    for split in (tfds.Split.TRAIN, tfds.Split.TEST)]

    builder = LocalImdbReviews(config="subwords8k", data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder
