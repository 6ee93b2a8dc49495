"""IMDB reviews encoded with the ``imdb_reviews/subwords8k`` vocabulary, and their batches."""
from npembed.datasets.batching import Batches, EncodedSplit, buffer_shuffle, pad_rows
from npembed.datasets.imdb import ImdbSubwords8k, load_imdb_subwords8k
from npembed.datasets.sources import DataError, resolve_source
from npembed.datasets.subwords import SubwordEncoder

__all__ = ["load_imdb_subwords8k", "ImdbSubwords8k", "EncodedSplit", "Batches", "SubwordEncoder",
           "DataError", "resolve_source", "buffer_shuffle", "pad_rows"]
