"""``load_imdb_subwords8k``: the tutorial's ``imdb_reviews/subwords8k``, offline or through tfds.

    data = load_imdb_subwords8k()                  # --data / NPEMBED_DATA, see sources.py
    data.encoder.vocab_size                        # 8185
    for ids, labels in data.train.batches(10, shuffle_buffer=1000, seed=0):
        ...                                        # ids (10, longest) int64, zero-padded

From an archive or folder: read the reviews (tfds's order), build the vocabulary from the train
reviews as tfds does (``build_from_corpus(target_vocab_size=2**13)``, with the fast builder of
subwords_fast.py: the same subwords as tfds's, in seconds), encode both splits, cache everything
(cache.py).  Later loads read the cache in about a second.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from npembed import kernels
from npembed.datasets import background
from npembed.datasets.batching import EncodedSplit
from npembed.datasets.cache import Cache
from npembed.datasets.dataset import ImdbSubwords8k
from npembed.datasets.sources import (SPLITS, DataError, DataSource, Review, fingerprint, read_reviews,
                                      resolve_source)
from npembed.datasets.subwords import SubwordEncoder
from npembed.datasets.subwords_fast import FastBuilder, Tokenized, encode_texts, encode_tokenized, tokenize

TARGET_VOCAB_SIZE = 2 ** 13
VOCAB_FILE = "vocab.subwords"


def load_imdb_subwords8k(data: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                         vocab: str | os.PathLike | None = None, progress: bool = True,
                         workers: int | None = None) -> ImdbSubwords8k:
    """Load (building and caching on first use) the subwords8k-encoded IMDB reviews.

    data:      an aclImdb archive, an extracted aclImdb/ folder, or 'tfds'; default
               ``$NPEMBED_DATA``.
    cache_dir: default ``$NPEMBED_CACHE`` or ``~/.cache/npembed``.
    vocab:     an existing ``.subwords`` file to encode with instead of building one.
    progress:  print what the slow steps are doing to stderr.
    workers:   unused: building and encoding are vectorised, with at most one helper process
               (background.py; kept so that existing calls still work).
    """
    source = resolve_source(data)
    if source.kind == "tfds":
        from npembed.datasets.tfds_source import load_from_tfds
        return load_from_tfds(progress=progress)
    say = _Reporter(progress)
    input_id = fingerprint(source)
    if vocab is not None:
        vocab = _checked_vocab_path(vocab)
        input_id = hashlib.sha256((input_id + hashlib.sha256(vocab.read_bytes()).hexdigest()).encode()).hexdigest()
    cache = Cache(cache_dir, input_id)
    cached = {name: cache.load_split(name) for name in SPLITS}
    if cache.is_valid(VOCAB_FILE) and all(cached.values()):
        return _from_cache(cache, cached, source)

    with cache.locked(on_wait=lambda holder: say(f"waiting for {holder}, which is writing the cache")):
        return _build(source, cache, vocab, say, workers)


def _checked_vocab_path(vocab: str | os.PathLike) -> Path:
    """``--vocab``'s path, refused unless it is a .subwords file that parses (at most
    subwords.MAX_FILE_BYTES): before the reviews are read, not after."""
    from npembed.cachedir import expand_path
    path = expand_path(vocab, "--vocab")
    if not path.exists():
        raise DataError(f"vocabulary file {path} does not exist")
    if not path.is_file():
        raise DataError(f"--vocab {path} is not a regular file (a folder, device or pipe): pass a "
                        ".subwords file")
    if path.suffix != ".subwords":
        raise DataError(f"--vocab {path}: a vocabulary file in tfds's format ends in '.subwords'; rename it")
    try:
        SubwordEncoder.load_from_file(path)
    except (UnicodeDecodeError, ValueError, IndexError) as err:
        raise DataError(f"--vocab {path} is not a readable vocabulary: {err}") from err
    return path    # hashed below: parsed, so of at most MAX_FILE_BYTES


def _from_cache(cache: Cache, cached: dict, source: DataSource) -> ImdbSubwords8k:
    """The cached data, its splits checked for consistency with the vocabulary (cache.py)."""
    try:
        encoder = SubwordEncoder.load_from_file(cache.path(VOCAB_FILE))
    except (UnicodeDecodeError, ValueError, IndexError) as err:
        raise DataError(f"cache file {cache.path(VOCAB_FILE)} is not a readable vocabulary ({err}): "
                        f"delete the folder {cache.folder} and run the command again to rebuild it") from None
    for name in SPLITS:
        cache.check_split(cached[name], encoder.vocab_size)
    return ImdbSubwords8k(encoder, cached["train"], cached["test"], source, cache.folder)


def _build(source: DataSource, cache: Cache, vocab: Path | None, say: "_Reporter",
           workers: int | None) -> ImdbSubwords8k:
    """Build what the cache lacks (under the cache's lock: another process may have just
    built it, so look again first)."""
    cached = {name: cache.load_split(name) for name in SPLITS}
    if cache.is_valid(VOCAB_FILE) and all(cached.values()):
        return _from_cache(cache, cached, source)
    say(f"reading reviews from {source.describe()}")
    compiling = _build_native_meanwhile()
    reviews = read_reviews(source)
    compiling.join()                          # before the fork below: the build holds a lock
    # the test reviews are cut into tokens on the other core while this one builds the vocabulary
    test_tokens = (background.start(tokenize, [r.text for r in reviews["test"]]) if cached["test"] is None
                   else None)
    tokenized: dict[str, Tokenized] = {}
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
                "(tfds's build_from_corpus, target 2**13; seconds, once)")
            start = time.perf_counter()
            tokenized["train"] = tokenize(r.text for r in reviews["train"])
            encoder = FastBuilder(tokenized["train"].counts()).build_from_corpus(TARGET_VOCAB_SIZE,
                                                                                  progress=say.detail)
            say(f"vocabulary built: vocab_size {encoder.vocab_size} in {time.perf_counter() - start:.0f} s")
        encoder.save_to_file(cache.path("vocab"))
        cache.seal(VOCAB_FILE)
    if test_tokens is not None:
        tokenized["test"] = test_tokens.result()
    for name in SPLITS:
        if cached[name] is None:
            cached[name] = encode_split(name, reviews[name], encoder, say, tokenized.get(name))
            cache.save_split(cached[name])
    cache.write_info({"source": source.describe(), "vocab_size": encoder.vocab_size,
                      **{f"{name}_reviews": len(cached[name]) for name in SPLITS}})
    return ImdbSubwords8k(encoder, cached["train"], cached["test"], source, cache.folder)


def encode_split(name: str, reviews: Sequence[Review], encoder: SubwordEncoder, say: "_Reporter",
                 tokenized: Tokenized | None = None) -> EncodedSplit:
    """Encode every review into one flat id array + offsets, in ``reviews``' order (the ids of
    ``encoder.encode`` for each review; ``tokenized``: the reviews already cut into tokens)."""
    say(f"encoding {len(reviews):,} {name} reviews")
    if tokenized is not None:
        ids, offsets = encode_tokenized(encoder, tokenized)
    else:
        ids, offsets = encode_texts(encoder, [r.text for r in reviews])
    labels = np.array([r.label for r in reviews], dtype=np.int8)
    keys = np.array([r.key for r in reviews])
    return EncodedSplit(name, ids, offsets, labels, keys)


def _build_native_meanwhile() -> threading.Thread:
    """Start choosing the kernel backend in a thread: on a first run that compiles the C module
    (about a second, in the compiler's process, on the other core) while the archive is read.
    A failure is left for the tokenizer's own call to report."""
    def choose() -> None:
        try:
            kernels.backend()
        except Exception:                     # noqa: BLE001 - raised again where it matters
            pass
    thread = threading.Thread(target=choose, name="npembed-native-build", daemon=True)
    thread.start()
    return thread


class _Reporter:
    """Progress messages on stderr, or silence."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.open_line = False          # a detail line waits to be ended

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"{chr(10) if self.open_line else ''}npembed: {message}", file=sys.stderr, flush=True)
            self.open_line = False

    def detail(self, message: str) -> None:
        """One progress line rewritten in place on a terminal (the vocabulary search's 16
        candidates); nothing when stderr is not a terminal (the next message sums up)."""
        if self.enabled and sys.stderr.isatty():
            print(f"\rnpembed:   {message}\033[K", end="", file=sys.stderr, flush=True)
            self.open_line = True
