"""Shared fixtures: small float64 models, real-looking batches, the real IMDB data."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

import npembed

SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "aclImdb_labeled.tar.gz"
GOLDEN_VOCAB = SHARED_ARCHIVE.parent / "imdb_subwords8k.subwords"


def real_data_path() -> str | None:
    """The IMDB archive: NPEMBED_DATA, else ../shared/data beside the checkout."""
    path = os.environ.get("NPEMBED_DATA") or (str(SHARED_ARCHIVE) if SHARED_ARCHIVE.exists() else None)
    return path


@pytest.fixture(scope="session")
def imdb():
    """The real subwords8k data (built into the user's cache on first use, ~2 minutes)."""
    path = real_data_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the real-data tests: ../shared/data/aclImdb_labeled.tar.gz is missing")
        pytest.skip("no IMDB data: set NPEMBED_DATA or place ../shared/data/aclImdb_labeled.tar.gz")
    from npembed.datasets import load_imdb_subwords8k
    return load_imdb_subwords8k(path, progress=False)


def padded_batch_with_repeats(rng: np.random.Generator, vocab_size: int, batch: int = 6,
                              max_len: int = 12) -> np.ndarray:
    """A small padded batch with repeated tokens and rows of different lengths."""
    lengths = rng.integers(2, max_len + 1, batch)
    lengths[0] = max_len
    ids = np.zeros((batch, max_len), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, vocab_size, length)
    ids[1, :3] = ids[1, 0]                  # one token three times in a row
    ids[2, 0] = ids[0, 0]                   # one token in two rows
    return ids


@pytest.fixture
def small_batch():
    rng = np.random.default_rng(7)
    ids = padded_batch_with_repeats(rng, vocab_size=30)
    labels = np.array([1, 0, 1, 1, 0, 0])
    return ids, labels


def small_model(mask_zero=False, dtype="float64", seed=3, vocab_size=30, hidden_units=5):
    return npembed.tutorial_model(vocab_size=vocab_size, embedding_dim=4, hidden_units=hidden_units,
                                  mask_zero=mask_zero, seed=seed, dtype=dtype)


def make_aclimdb_archive(path: Path, reviews: dict[str, bytes], top: str = "aclImdb") -> Path:
    """Write a .tar.gz holding ``{relative path: bytes}`` under ``top/``."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in reviews.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tiny_corpus() -> dict[str, bytes]:
    """Eight reviews per split, both classes, with words that repeat (so subwords form)."""
    good = [b"A wonderful film, truly wonderful acting.", b"Great story and great music!",
            b"I loved this movie; loved it.", b"The best film of the year, the best."]
    bad = [b"A terrible film, truly terrible acting.", b"Boring story and boring music.",
           b"I hated this movie; hated it.", b"The worst film of the year, the worst."]
    corpus = {}
    for split in ("train", "test"):
        for i, text in enumerate(good):
            corpus[f"{split}/pos/{i}_9.txt"] = text + b"\n"
        for i, text in enumerate(bad):
            corpus[f"{split}/neg/{i}_2.txt"] = b"  " + text
    return corpus


def _using_backend(name: str):
    """Switch npembed's kernels to ``name`` for one test, then back.  The native kernels must
    build wherever a C compiler is present; under CI a failed build fails the test."""
    from npembed import kernels
    previous = kernels.backend()
    try:
        kernels.set_backend(name)
    except ImportError as err:
        if os.environ.get("CI"):
            pytest.fail(f"the native kernels must build under CI: {err}")
        pytest.skip(str(err))
    yield name
    kernels.set_backend(previous)


@pytest.fixture(params=["numpy", "native"])
def kernel_backend(request):
    """Run the test once on each kernel backend."""
    yield from _using_backend(request.param)


@pytest.fixture
def native_backend():
    """Run the test on the native (C) kernels."""
    yield from _using_backend("native")
