"""The RNN tutorial's training step, framework against framework: ``python -m benchmarks.rnn_bench``.

The model of TensorFlow's "Text classification with an RNN" tutorial:
``Embedding(8185, 64) -> Bidirectional(LSTM(64)) -> Dense(64, relu) -> Dense(1)``, sigmoid
cross-entropy on logits, Adam(1e-4), on its own batches: ``shuffle(10000).padded_batch(64)`` of
the real train reviews (seed 0).  Batches ``--first`` .. ``--first + --batches - 1`` of that epoch
are timed after one warm-up batch (the tutorial's first batches average about 1,358 padded steps;
an epoch is 391 batches).  Each framework runs in its own process (``--worker``), builds its
inputs before its clock starts, and reports seconds per batch, milliseconds per padded time step
(a batch of length L counts L steps, whatever the framework pads to internally) and its peak
resident memory.  ``--mask`` gives every framework the masked variant (``mask_zero=True``,
packed sequences for PyTorch): padded steps then need no work.

Frameworks: npembed (``npembed.recurrent``), Keras 3 and tf_keras (``train_on_batch``),
PyTorch eager (``nn.LSTM(bidirectional=True)``; with ``--mask``, ``pack_padded_sequence``) and JAX
(``jax.jit`` over ``lax.scan``, optax's Adam; lengths padded to multiples of 64 with the state
held past each batch's own length, one compile per bucket, outside the clock).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import peak_rss_mb

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("npembed", "keras", "tf_keras", "torch", "jax")
VOCAB, DIM, UNITS, HIDDEN, BATCH, LEARNING_RATE = 8185, 64, 64, 64, 64, 1e-4


# --------------------------------------------------------------------------- one framework each
def npembed_step(mask: bool):
    import npembed
    from npembed.layers import Dense, Embedding
    from npembed.recurrent import LSTM, Bidirectional
    model = npembed.Sequential([Embedding(VOCAB, DIM, mask_zero=mask), Bidirectional(LSTM(UNITS)),
                                Dense(HIDDEN, activation="relu"), Dense(1)], seed=0)
    model.compile(optimizer=npembed.optimizers.Adam(learning_rate=LEARNING_RATE), metrics=["accuracy"])
    return lambda ids, labels: model.train_on_batch(ids, labels)


def keras_step(mask: bool, module: str):
    if module == "tf_keras":
        import tf_keras as keras
    else:
        import keras
    model = keras.Sequential([keras.Input(shape=(None,), dtype="int32"),
                              keras.layers.Embedding(VOCAB, DIM, mask_zero=mask),
                              keras.layers.Bidirectional(keras.layers.LSTM(UNITS)),
                              keras.layers.Dense(HIDDEN, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return lambda ids, labels: model.train_on_batch(ids, labels)


def torch_step(mask: bool):
    import torch
    from torch import nn
    torch.manual_seed(0)
    embedding, lstm = nn.Embedding(VOCAB, DIM), nn.LSTM(DIM, UNITS, batch_first=True, bidirectional=True)
    head = nn.Sequential(nn.Linear(2 * UNITS, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))
    params = [*embedding.parameters(), *lstm.parameters(), *head.parameters()]
    optimizer, loss_fn = torch.optim.Adam(params, lr=LEARNING_RATE, eps=1e-7), nn.BCEWithLogitsLoss()

    def step(ids, labels):
        ids_t, labels_t = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(labels)
        x = embedding(ids_t)
        if mask:
            lengths = torch.from_numpy(np.count_nonzero(ids, axis=1).clip(min=1))
            x = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = lstm(x)                              # h_n (2, B, U): forward's last, backward's last
        logits = head(torch.cat([h_n[0], h_n[1]], dim=1)).squeeze(1)
        loss = loss_fn(logits, labels_t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)
    return step


def jax_step(mask: bool):
    import jax
    import jax.numpy as jnp
    import optax
    rng = np.random.default_rng(0)

    def lstm_params(d_in):
        return {"kernel": rng.uniform(-0.1, 0.1, (d_in, 4 * UNITS)).astype(np.float32),
                "recurrent": rng.uniform(-0.1, 0.1, (UNITS, 4 * UNITS)).astype(np.float32),
                "bias": np.zeros(4 * UNITS, np.float32)}
    params = {"embeddings": rng.uniform(-0.05, 0.05, (VOCAB, DIM)).astype(np.float32),
              "forward": lstm_params(DIM), "backward": lstm_params(DIM),
              "kernel": rng.uniform(-0.1, 0.1, (2 * UNITS, HIDDEN)).astype(np.float32),
              "bias": np.zeros(HIDDEN, np.float32),
              "kernel_1": rng.uniform(-0.1, 0.1, (HIDDEN, 1)).astype(np.float32), "bias_1": np.zeros(1, np.float32)}
    params = jax.tree_util.tree_map(jnp.asarray, params)
    optimizer = optax.adam(LEARNING_RATE, eps=1e-7)
    state = {"params": params, "opt": optimizer.init(params)}

    def run(p, x, keep):
        """x (T, B, D), keep (T, B): the last state; a step with keep 0 holds the state."""
        projected = x @ p["kernel"] + p["bias"]                  # every step's input product at once

        def cell(carry, inputs):
            h, c = carry
            z, k = inputs
            z = z + h @ p["recurrent"]
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
            k = k[:, None]
            return (jnp.where(k, h_new, h), jnp.where(k, c_new, c)), None
        zeros = jnp.zeros((x.shape[1], UNITS), x.dtype)
        (h, _), _ = jax.lax.scan(cell, (zeros, zeros), (projected, keep))
        return h

    def loss_fn(p, ids, length, labels):
        x = jnp.transpose(p["embeddings"][ids], (1, 0, 2))      # (T, B, D)
        inside = jnp.arange(ids.shape[1])[:, None] < length      # (T, 1): the batch's own length
        keep = (inside & (ids.T != 0)) if mask else jnp.broadcast_to(inside, ids.T.shape)
        h = jnp.concatenate([run(p["forward"], x, keep), run(p["backward"], x[::-1], keep[::-1])], axis=1)
        h = jax.nn.relu(h @ p["kernel"] + p["bias"])
        logits = (h @ p["kernel_1"] + p["bias_1"])[:, 0]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))

    @jax.jit
    def update(p, opt, ids, length, labels):
        loss, grads = jax.value_and_grad(loss_fn)(p, ids, length, labels)
        updates, opt = optimizer.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt, loss

    def step(ids, labels):
        bucket = -(-ids.shape[1] // 64) * 64
        padded = np.zeros((ids.shape[0], bucket), np.int32)
        padded[:, :ids.shape[1]] = ids
        state["params"], state["opt"], loss = update(state["params"], state["opt"], jnp.asarray(padded),
                                                     jnp.int32(ids.shape[1]), jnp.asarray(labels))
        return float(loss)                                      # waits for the step
    step.warm = lambda ids, labels: step(ids, labels)           # compiles this bucket
    return step


def make_step(framework: str, mask: bool):
    if framework in ("keras", "tf_keras"):
        return keras_step(mask, framework)
    return {"npembed": npembed_step, "torch": torch_step, "jax": jax_step}[framework](mask)


# --------------------------------------------------------------------------- the worker
def worker(spec: dict) -> dict:
    with np.load(spec["workload"]) as data:
        batches = [(data[f"ids_{k}"], data[f"labels_{k}"]) for k in range(int(data["count"]))]
    step = make_step(spec["framework"], spec["mask"])
    step(*batches[0])                                           # warm-up: builds, traces, compiles
    if spec["framework"] == "jax":
        for ids, labels in batches[1:]:                         # one compile per bucket, off the clock
            step(ids, labels)
    seconds = []
    for ids, labels in batches[1:]:
        start = time.perf_counter()
        step(ids, labels)
        seconds.append(time.perf_counter() - start)
    steps = [ids.shape[1] for ids, _ in batches[1:]]
    return {"batch_seconds": seconds, "padded_steps": steps,
            "ms_per_padded_step": 1000 * sum(seconds) / sum(steps), "peak_rss_mb": peak_rss_mb()}




# --------------------------------------------------------------------------- the driver
def save_workload(path: Path, data_path, first: int, count: int) -> dict:
    """Batches first-1 (the warm-up) .. first+count-1 of epoch 0, and the epoch's padded steps."""
    from npembed.datasets import load_imdb_subwords8k
    data = load_imdb_subwords8k(data_path, progress=False)
    epoch = list(data.train.batches(BATCH, 10_000, seed=0).for_epoch(0))
    chosen = epoch[first - 1:first + count]
    arrays = {"count": len(chosen)}
    for k, (ids, labels) in enumerate(chosen):
        arrays[f"ids_{k}"], arrays[f"labels_{k}"] = ids.astype(np.int32), labels.astype(np.float32)
    np.savez(path, **arrays)
    real = sum(int(np.count_nonzero(ids)) for ids, _ in epoch)
    return {"epoch_batches": len(epoch), "epoch_padded_steps": sum(ids.shape[1] for ids, _ in epoch),
            "epoch_positions": sum(ids.size for ids, _ in epoch), "epoch_real_positions": real}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rnn_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--mask", action="store_true", help="the masked variant (mask_zero=True)")
    parser.add_argument("--first", type=int, default=1, help="first timed batch (after one warm-up batch)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--data", default=None, help="IMDB data (default $NPEMBED_DATA)")
    parser.add_argument("--out", default=None, help="results JSON")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(Path(args.worker).read_text())
        Path(spec["out"]).write_text(json.dumps(worker(spec)))
        return
    results = {"command": " ".join(["python -m benchmarks.rnn_bench", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d"), "mask": args.mask, "frameworks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "rnn_batches.npz"
        results["epoch"] = save_workload(workload, args.data, args.first, args.batches)
        for framework in args.frameworks:
            spec = {"framework": framework, "mask": args.mask, "workload": str(workload),
                    "out": str(Path(tmp) / f"{framework}.json")}
            Path(tmp, "spec.json").write_text(json.dumps(spec))
            print(f"  {framework} ...", end=" ", flush=True)
            done = subprocess.run([sys.executable, "-m", "benchmarks.rnn_bench", "--worker", str(Path(tmp, "spec.json"))],
                                  cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                print("failed:", done.stderr.strip().splitlines()[-1:] or done.returncode)
                continue
            entry = json.loads(Path(spec["out"]).read_text())
            entry["epoch_seconds_estimate"] = entry["ms_per_padded_step"] * results["epoch"]["epoch_padded_steps"] / 1000
            results["frameworks"][framework] = entry
            print(f"{entry['ms_per_padded_step']:.3f} ms per padded step, {entry['peak_rss_mb']:.0f} MB")
    print(markdown(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def markdown(results: dict) -> str:
    epoch = results["epoch"]
    lines = [f"{'Masked' if results['mask'] else 'Unmasked'}; an epoch: {epoch['epoch_batches']} batches, "
             f"{epoch['epoch_padded_steps']:,} padded steps, {epoch['epoch_real_positions']:,} of "
             f"{epoch['epoch_positions']:,} positions real.", "",
             "| framework | s per batch (median) | ms per padded step | epoch estimate, min | peak RSS MB |",
             "|---|---|---|---|---|"]
    for name, entry in results["frameworks"].items():
        lines.append(f"| {name} | {np.median(entry['batch_seconds']):.3f} | {entry['ms_per_padded_step']:.3f} | "
                     f"{entry['epoch_seconds_estimate'] / 60:.1f} | {entry['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
