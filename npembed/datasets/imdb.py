"""``load_imdb_subwords8k``: the tutorial's ``imdb_reviews/subwords8k``, offline or through tfds.

    data = load_imdb_subwords8k()                  # --data / NPEMBED_DATA, see sources.py
    data.encoder.vocab_size                        # 8185
    for ids, labels in data.train.batches(10, shuffle_buffer=1000, seed=0):
        ...                                        # ids (10, longest) int64, zero-padded

From an archive or folder: read the reviews (tfds's order), build the vocabulary from the train
reviews as tfds does (``build_from_corpus(target_vocab_size=2**13)``; about 3 minutes, once),
encode both splits, cache everything (cache.py).  Later loads read the cache in about a second.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from npembed.datasets.batching import EncodedSplit
from npembed.datasets.cache import Cache
from npembed.datasets.sources import (SPLITS, DataError, DataSource, Review, fingerprint, read_reviews,
                                      resolve_source)
from npembed.datasets.subwords import SubwordEncoder

TARGET_VOCAB_SIZE = 2 ** 13
VOCAB_FILE = "vocab.subwords"


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


def load_imdb_subwords8k(data: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                         vocab: str | os.PathLike | None = None, progress: bool = True,
                         workers: int | None = None) -> ImdbSubwords8k:
    """Load (building and caching on first use) the subwords8k-encoded IMDB reviews.

    data:      an aclImdb archive, an extracted aclImdb/ folder, or 'tfds'; default
               ``$NPEMBED_DATA``.
    cache_dir: default ``$NPEMBED_CACHE`` or ``~/.cache/npembed``.
    vocab:     an existing ``.subwords`` file to encode with instead of building one.
    progress:  print what the slow steps are doing, with progress bars, to stderr.
    workers:   processes for encoding (default: the number of CPUs).
    """
    source = resolve_source(data)
    if source.kind == "tfds":
        from npembed.datasets.tfds_source import load_from_tfds
        return load_from_tfds(progress=progress)
    say = _Reporter(progress)
    input_id = fingerprint(source)
    if vocab is not None:
        vocab_path = Path(vocab).expanduser()
        if not vocab_path.is_file():
            raise DataError(f"vocabulary file {vocab_path} does not exist")
        if vocab_path.suffix != ".subwords":
            raise DataError(f"--vocab {vocab_path}: a vocabulary file in tfds's format ends in "
                            "'.subwords'; rename it")
        vocab = vocab_path
        input_id = hashlib.sha256((input_id + hashlib.sha256(vocab_path.read_bytes()).hexdigest()).encode()).hexdigest()
    cache = Cache(cache_dir, input_id)
    cached = {name: cache.load_split(name) for name in SPLITS}
    if cache.is_valid(VOCAB_FILE) and all(cached.values()):
        encoder = SubwordEncoder.load_from_file(cache.path(VOCAB_FILE))
        return ImdbSubwords8k(encoder, cached["train"], cached["test"], source, cache.folder)

    with cache.locked(on_wait=lambda holder: say(f"waiting for {holder}, which is writing the cache")):
        return _build(source, cache, vocab, say, workers)


def _build(source: DataSource, cache: Cache, vocab: Path | None, say: "_Reporter",
           workers: int | None) -> ImdbSubwords8k:
    """Build what the cache lacks (under the cache's lock: another process may have just
    built it, so look again first)."""
    cached = {name: cache.load_split(name) for name in SPLITS}
    if cache.is_valid(VOCAB_FILE) and all(cached.values()):
        encoder = SubwordEncoder.load_from_file(cache.path(VOCAB_FILE))
        return ImdbSubwords8k(encoder, cached["train"], cached["test"], source, cache.folder)
    say(f"reading reviews from {source.describe()}")
    reviews = read_reviews(source)
    if cache.is_valid(VOCAB_FILE):
        encoder = SubwordEncoder.load_from_file(cache.path(VOCAB_FILE))
    else:
        if vocab is not None:
            try:
                encoder = SubwordEncoder.load_from_file(vocab)
            except (UnicodeDecodeError, ValueError, IndexError) as err:
                raise DataError(f"--vocab {vocab} is not a readable vocabulary: {err}") from err
        else:
            say(f"building the subwords8k vocabulary from {len(reviews['train']):,} train reviews "
                "(tfds's build_from_corpus, target 2**13; a few minutes, once)")
            start = time.perf_counter()
            encoder = SubwordEncoder.build_from_corpus((r.text for r in reviews["train"]),
                                                       TARGET_VOCAB_SIZE, progress=say.detail)
            say(f"vocabulary built: vocab_size {encoder.vocab_size} in {time.perf_counter() - start:.0f} s")
        encoder.save_to_file(cache.path("vocab"))
        cache.seal(VOCAB_FILE)
    for name in SPLITS:
        if cached[name] is None:
            cached[name] = encode_split(name, reviews[name], encoder, say, workers)
            cache.save_split(cached[name])
    cache.write_info({"source": source.describe(), "vocab_size": encoder.vocab_size,
                      **{f"{name}_reviews": len(cached[name]) for name in SPLITS}})
    return ImdbSubwords8k(encoder, cached["train"], cached["test"], source, cache.folder)


def encode_split(name: str, reviews: Sequence[Review], encoder: SubwordEncoder, say: "_Reporter",
                 workers: int | None = None) -> EncodedSplit:
    """Encode every review into one flat id array + offsets, in ``reviews``' order."""
    texts = [r.text for r in reviews]
    chunk = 500
    chunks = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    workers = workers or os.cpu_count() or 1
    encoded: list[list[list[int]]] = []
    bar = say.bar(total=len(texts), desc=f"encoding {name}", unit="review")
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(encoder.subwords,)) as pool:
            for ids in pool.map(_encode_chunk, chunks):
                encoded.append(ids)
                bar.update(len(ids))
    else:
        _init_worker(encoder.subwords)
        for texts_chunk in chunks:
            encoded.append(_encode_chunk(texts_chunk))
            bar.update(len(texts_chunk))
    bar.close()
    per_review = [ids for block in encoded for ids in block]
    lengths = np.fromiter((len(ids) for ids in per_review), dtype=np.int64, count=len(per_review))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter((i for ids in per_review for i in ids), dtype=np.int32, count=int(offsets[-1]))
    labels = np.array([r.label for r in reviews], dtype=np.int8)
    keys = np.array([r.key for r in reviews])
    return EncodedSplit(name, flat, offsets, labels, keys)


_WORKER_ENCODER: SubwordEncoder | None = None


def _init_worker(subwords: list[str]) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = SubwordEncoder(subwords)


def _encode_chunk(texts: list[bytes]) -> list[list[int]]:
    return [_WORKER_ENCODER.encode(text) for text in texts]


class _Reporter:
    """Progress messages and bars on stderr (tqdm when installed), or silence."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"npembed: {message}", file=sys.stderr, flush=True)

    def detail(self, message: str) -> None:
        self(f"  {message}")

    def bar(self, total: int, desc: str, unit: str):
        if self.enabled:
            try:
                from tqdm import tqdm
                return tqdm(total=total, desc=f"npembed: {desc}", unit=unit, file=sys.stderr, disable=None)
            except ImportError:
                pass
        return _NoBar()


class _NoBar:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...
