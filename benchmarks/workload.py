"""The identical work every framework is timed on.

The tutorial's epoch: 2,500 batches of 10 from ``shuffle(1000).padded_batch(10)`` over the real
train split (seed 0), and the 25,000 test reviews in batches of 10 for inference.  Saved once
as ragged arrays (ids, offsets, batch sizes) in an .npz that each worker process loads and pads
*before* its clock starts.  Sweeps use synthetic batches from a seeded generator instead, built
identically in every process.
"""
from __future__ import annotations

import numpy as np


def save_workload(path, data, train_steps: int | None = None, predict_batches: int | None = None) -> dict:
    train = list(data.train.batches(10, 1000, seed=0).for_epoch(0))[:train_steps]
    test = list(data.test.batches(10, shuffle_buffer=None).for_epoch(0))[:predict_batches]
    arrays = {}
    for name, batches in (("train", train), ("test", test)):
        arrays[f"{name}_ids"] = np.concatenate([x.ravel() for x, _ in batches]).astype(np.int32)
        arrays[f"{name}_shapes"] = np.array([x.shape for x, _ in batches], dtype=np.int64)
        arrays[f"{name}_labels"] = np.concatenate([y for _, y in batches]).astype(np.int8)
    np.savez(path, vocab_size=data.encoder.vocab_size, **arrays)
    return {"train_steps": len(train), "train_tokens": int(sum(np.count_nonzero(x) for x, _ in train)),
            "train_padded_positions": int(sum(x.size for x, _ in train)), "predict_reviews": int(sum(len(y) for _, y in test))}


def load_workload(path, splits=("train", "test")) -> tuple[int, list, list]:
    """(vocab_size, train batches, test batches), each batch (ids int32 (B, L), labels float32 (B,));
    a split not in ``splits`` comes back empty, so a process holds only the batches it times."""
    with np.load(path) as data:
        out = []
        for name in ("train", "test"):
            if name not in splits:
                out.append([])
                continue
            ids, shapes, labels = data[f"{name}_ids"], data[f"{name}_shapes"], data[f"{name}_labels"]
            batches, offset, row = [], 0, 0
            for b, length in shapes:
                batches.append((ids[offset:offset + b * length].reshape(b, length),
                                labels[row:row + b].astype(np.float32)))
                offset += b * length
                row += b
            out.append(batches)
        return int(data["vocab_size"]), out[0], out[1]


def synthetic_batches(vocab_size: int, batch_size: int, length: int, steps: int, seed: int = 0) -> list:
    """``steps`` batches of fixed ``length`` (int32 ids) with Zipf-like ids (frequent tokens repeat, like text)
    and the last quarter of every second row padded."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(steps):
        ids = np.minimum(rng.zipf(1.2, size=(batch_size, length)), vocab_size - 1).astype(np.int32)
        ids[::2, length - length // 4:] = 0
        batches.append((ids, rng.integers(0, 2, batch_size).astype(np.float32)))
    return batches
