"""ms per padded time step of one training step of the RNN tutorial's model, npembed or Keras 3.

    python -m benchmarks.rnn_step npembed [--mask] [--batches 4]
    python -m benchmarks.rnn_step keras3  [--mask] [--batches 4]

Run each framework in its own process.  The batches are the tutorial's
(``shuffle(10000).padded_batch(64)``, seed 0): batch 0 is a warm-up (Keras traces its graph
there), batches 1..N are timed one ``train_on_batch`` each; the figure is the total time over
the total padded length (sum of each batch's L), as in issue 21.  Float32, Adam(1e-4).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def batches(count: int):
    from npembed.datasets import load_imdb_subwords8k
    train = load_imdb_subwords8k(os.environ.get("NPEMBED_DATA"), progress=False).train
    stream = train.batches(64, shuffle_buffer=10000, seed=0).for_epoch(0)
    return [next(stream) for _ in range(count + 1)]


def npembed_step(mask: bool):
    import npembed
    from npembed import layers
    from npembed.recurrent import LSTM, Bidirectional
    model = npembed.Sequential([layers.Embedding(8185, 64, mask_zero=mask), Bidirectional(LSTM(64)),
                                layers.Dense(64, activation="relu"), layers.Dense(1)], seed=0)
    model.compile(optimizer=npembed.optimizers.Adam(1e-4))
    return lambda ids, labels: model.train_on_batch(ids, labels)


def keras3_step(mask: bool):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    model = keras.Sequential([keras.Input(shape=(None,), dtype="int64"),
                              keras.layers.Embedding(8185, 64, mask_zero=mask),
                              keras.layers.Bidirectional(keras.layers.LSTM(64)),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return lambda ids, labels: model.train_on_batch(ids, labels.astype("float32"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=["npembed", "keras3"])
    parser.add_argument("--mask", action="store_true")
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args(argv)
    data = batches(args.batches)
    step = (npembed_step if args.framework == "npembed" else keras3_step)(args.mask)
    step(*data[0])
    times, steps = [], 0
    for ids, labels in data[1:]:
        start = time.perf_counter()
        step(ids, labels)
        times.append(time.perf_counter() - start)
        steps += ids.shape[1]
    print(f"{args.framework} mask={args.mask}: {1000 * sum(times) / steps:.3f} ms per padded step "
          f"({len(times)} batches, {steps} padded steps, per batch {', '.join(f'{t:.2f}' for t in times)} s)")


if __name__ == "__main__":
    main()
