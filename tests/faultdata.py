"""A small synthetic aclImdb archive for tests that run the CLI in subprocesses: big enough for
epochs of tens of steps, small enough that its vocabulary builds in seconds."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import make_aclimdb_archive

POSITIVE = "wonderful great loved best moving brilliant superb delight charming".split()
NEGATIVE = "terrible boring hated worst dull awful tedious mess clumsy".split()
NEUTRAL = ("the a film movie story acting music scene plot actor and of to is was it this "
           "that with for as on by an at be director script camera ending").split()


def synthetic_archive(path: Path, reviews_per_class: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    corpus = {}
    for split in ("train", "test"):
        for label, words in (("pos", POSITIVE), ("neg", NEGATIVE)):
            for i in range(reviews_per_class):
                length = int(rng.integers(5, 60))
                pool = words + NEUTRAL * 2
                text = " ".join(pool[j] for j in rng.integers(0, len(pool), length))
                corpus[f"{split}/{label}/{i}_{7 if label == 'pos' else 3}.txt"] = text.capitalize().encode() + b"."
    return make_aclimdb_archive(path, corpus)
