"""One framework, one task, in its own process: ``python -m benchmarks.worker SPEC.json``.

SPEC: {"framework": "npembed" | "npembed_lazy" | "keras" | "keras_jit" | "torch" | "jax",
       "task": "train" | "predict" | "sweep", "workload": path, "repeats": n, "warmup_epochs": n,
       "points": [...] (sweep), "out": path}
Writes {"epoch_seconds": [...], "peak_rss_mb": ..., ...} to ``out``.  Batches are built before
any clock starts; each timed region covers exactly the framework's own training or inference.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.machine import peak_rss_mb  # noqa: E402
from benchmarks.workload import load_workload, synthetic_batches  # noqa: E402


# --------------------------------------------------------------------------- frameworks
class NpembedRunner:
    def __init__(self, vocab_size, dim=16, hidden=16, variant="keras3"):
        import npembed
        self.model = npembed.tutorial_model(vocab_size=vocab_size, embedding_dim=dim, hidden_units=hidden, seed=0)
        self.model.compile(optimizer=npembed.optimizers.Adam(variant=variant), metrics=["accuracy"])

    def train(self, batches):
        self.model.fit(batches, epochs=1, verbose=0)

    def predict(self, batches):
        return self.model.predict(batches)


class KerasRunner:
    def __init__(self, vocab_size, dim=16, hidden=16, jit=False):
        import keras
        layers = [keras.Input(shape=(None,), dtype="int64"), keras.layers.Embedding(vocab_size, dim),
                  keras.layers.GlobalAveragePooling1D()]
        if hidden:
            layers.append(keras.layers.Dense(hidden, activation="relu"))
        layers.append(keras.layers.Dense(1))
        self.model = keras.Sequential(layers)
        self.model.compile(optimizer=keras.optimizers.Adam(), jit_compile=jit,
                           loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
        self._datasets = {}

    @staticmethod
    def dataset(batches, with_labels=True):
        """The batches as a native tf.data pipeline, with no Python generator in the loop: the
        reviews as one ragged tensor, batched in the same groups and padded per batch to the
        same shapes, as the tutorial's ``padded_batch`` does (padding is id 0, never a token)."""
        import tensorflow as tf
        sizes = {x.shape[0] for x, _ in batches}
        if len(sizes) != 1:
            raise ValueError(f"the Keras runner expects equal batch sizes, got {sorted(sizes)}")
        lengths = [np.count_nonzero(x, axis=1) for x, _ in batches]
        flat = np.concatenate([x[row, :n] for (x, _), ns in zip(batches, lengths) for row, n in enumerate(ns)])
        reviews = tf.RaggedTensor.from_row_lengths(flat.astype(np.int32), np.concatenate(lengths))
        labels = np.concatenate([y for _, y in batches]).astype(np.float32)
        ds = tf.data.Dataset.from_tensor_slices((reviews, labels)).batch(sizes.pop())
        return ds.map(_padded_with_labels if with_labels else _padded).prefetch(2)

    def _cached(self, batches, with_labels):
        key = (id(batches), with_labels)          # built once, outside the clock; the entry
        if key not in self._datasets:             # keeps `batches` alive, so its id stays its own
            self._datasets[key] = (batches, self.dataset(batches, with_labels))
        return self._datasets[key][1]

    def train(self, batches):
        self.model.fit(self._cached(batches, True), epochs=1, verbose=0)

    def predict(self, batches):
        return self.model.predict(self._cached(batches, False), verbose=0)


def _padded_with_labels(ids, labels):
    return ids.to_tensor(), labels


def _padded(ids, _labels):
    return ids.to_tensor()


class TorchRunner:
    def __init__(self, vocab_size, dim=16, hidden=16):
        import torch
        from torch import nn
        self.torch = torch
        stack = [nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1)] if hidden else [nn.Linear(dim, 1)]
        self.embedding = nn.Embedding(vocab_size, dim)
        self.head = nn.Sequential(*stack)
        params = list(self.embedding.parameters()) + list(self.head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=1e-3, eps=1e-7)
        self.loss = nn.BCEWithLogitsLoss()
        self._cache = {}

    def _tensors(self, batches):
        key = id(batches)
        if key not in self._cache:                      # converted once, outside the clock
            self._cache[key] = (batches, [(self.torch.from_numpy(x.astype(np.int64)), self.torch.from_numpy(y))
                                          for x, y in batches])  # nn.Embedding wants int64 ids;
        return self._cache[key][1]                              # `batches` kept: its id stays its own

    def forward(self, ids):
        return self.head(self.embedding(ids).mean(dim=1)).squeeze(1)

    def train(self, batches):
        correct = 0
        for ids, labels in self._tensors(batches):
            self.optimizer.zero_grad()
            logits = self.forward(ids)
            loss = self.loss(logits, labels)
            loss.backward()
            self.optimizer.step()
            correct += int(((logits > 0).float() == labels).sum())

    def predict(self, batches):
        with self.torch.no_grad():
            return [self.forward(ids) for ids, _ in self._tensors(batches)]


class JaxRunner:
    """The same model as one ``jax.jit``-compiled step with optax's Adam (dense, lr 1e-3,
    epsilon 1e-7).  XLA compiles one program per input shape, so each batch is padded with id 0
    to the next multiple of ``BUCKET`` (at most 16 shapes for IMDB's longest review) and the
    batch's own padded length L goes in as a traced scalar: positions past L are left out of the
    sum and the sum is divided by L, so the unmasked average over the batch's padded length
    stays exactly the tutorial's.  Batches become device arrays once, outside the clock."""
    BUCKET = 256

    def __init__(self, vocab_size, dim=16, hidden=16):
        import jax
        import jax.numpy as jnp
        import optax
        from npembed import initializers
        self.jax, self.jnp = jax, jnp
        rng = np.random.default_rng(0)
        self.params = {"embeddings": rng.uniform(-0.05, 0.05, (vocab_size, dim)).astype(np.float32)}
        widths = [dim, *([hidden] if hidden else []), 1]
        for k, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
            self.params[f"kernel_{k}"] = initializers.glorot_uniform((fan_in, fan_out), rng, np.float32)
            self.params[f"bias_{k}"] = np.zeros(fan_out, np.float32)
        self.params = jax.tree_util.tree_map(jnp.asarray, self.params)
        self.layers = len(widths) - 1
        optimizer = optax.adam(1e-3, eps=1e-7)
        self.opt_state = optimizer.init(self.params)
        loss_fn = self._loss

        def step(params, opt_state, ids, length, labels):
            (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, ids, length, labels)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            correct = jnp.sum((logits > 0) == (labels > 0.5))
            return optax.apply_updates(params, updates), opt_state, loss, correct

        self._step = jax.jit(step)
        self._forward = jax.jit(self._logits)
        self._cache = {}

    def _logits(self, params, ids, length):
        jnp = self.jnp
        x = params["embeddings"][ids]                                        # (B, L_bucket, D)
        keep = (jnp.arange(ids.shape[1]) < length)[None, :, None]
        h = jnp.sum(jnp.where(keep, x, 0.0), axis=1) / length.astype(x.dtype)   # (B, D)
        for k in range(self.layers):
            h = h @ params[f"kernel_{k}"] + params[f"bias_{k}"]
            if k < self.layers - 1:
                h = self.jax.nn.relu(h)
        return h[:, 0]

    def _loss(self, params, ids, length, labels):
        import optax
        logits = self._logits(params, ids, length)
        return self.jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels)), logits

    def _arrays(self, batches):
        key = id(batches)
        if key not in self._cache:
            arrays = []
            for ids, labels in batches:
                bucket = -(-ids.shape[1] // self.BUCKET) * self.BUCKET
                padded = np.zeros((ids.shape[0], bucket), np.int32)
                padded[:, :ids.shape[1]] = ids
                arrays.append((self.jnp.asarray(padded), self.jnp.asarray(ids.shape[1], self.jnp.int32),
                               self.jnp.asarray(labels)))
            self._cache[key] = (batches, arrays)
        return self._cache[key][1]

    def train(self, batches):
        params, state, correct = self.params, self.opt_state, 0
        for ids, length, labels in self._arrays(batches):
            params, state, _loss, right = self._step(params, state, ids, length, labels)
            correct = correct + right
        self.params, self.opt_state = params, state
        self.jax.block_until_ready((params, correct))

    def predict(self, batches):
        out = [self._forward(self.params, ids, length) for ids, length, _ in self._arrays(batches)]
        return self.jax.block_until_ready(out)


def make_runner(framework, vocab_size, dim=16, hidden=16):
    if framework == "npembed":
        return NpembedRunner(vocab_size, dim, hidden)
    if framework == "npembed_lazy":
        return NpembedRunner(vocab_size, dim, hidden, variant="lazy")
    if framework in ("keras", "keras_jit"):
        return KerasRunner(vocab_size, dim, hidden, jit=framework == "keras_jit")
    if framework == "torch":
        return TorchRunner(vocab_size, dim, hidden)
    if framework == "jax":
        return JaxRunner(vocab_size, dim, hidden)
    raise ValueError(f"unknown framework {framework!r}")


# --------------------------------------------------------------------------- tasks
def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def task_train(spec, vocab_size, train, _test) -> dict:
    runner = make_runner(spec["framework"], vocab_size)
    train = train[:spec.get("steps")]
    warmup = [timed(runner.train, train) for _ in range(spec.get("warmup_epochs", 1))]
    epochs = [timed(runner.train, train) for _ in range(spec["repeats"])]
    result = {"warmup_epoch_seconds": warmup, "epoch_seconds": epochs}
    if spec["framework"] == "npembed":
        result["step_breakdown_us"] = step_breakdown(runner.model, train)
    return result


def step_breakdown(model, batches) -> dict:
    """Microseconds per step in each part of ``train_on_batch``, over one more epoch (its
    total is a little above the fit's step time: the clock is read between the parts)."""
    from npembed import kernels
    from npembed.checks import check_labels
    clock, parts = time.perf_counter, {}
    for ids, labels in batches:
        t0 = clock()
        logits = model.forward(ids)
        t1 = clock()
        labels = check_labels(labels, logits.shape[0])
        model.loss(labels, logits)
        t2 = clock()
        model.backward(model.loss.gradient(labels, logits))
        t3 = clock()
        grads = model.trainable_gradients()
        grads[0].row_sums()                         # computed once, cached for the optimizer
        t4 = clock()
        model.optimizer.apply_gradients(grads, model.weights)
        t5 = clock()
        for name, seconds in (("forward (embedding + pooling, dense layers)", t1 - t0),
                              ("loss", t2 - t1), ("backward (dense layers)", t3 - t2),
                              ("embedding gradient row sums", t4 - t3), ("Adam, all five weights", t5 - t4)):
            parts[name] = parts.get(name, 0.0) + seconds
    breakdown = {name: 1e6 * seconds / len(batches) for name, seconds in parts.items()}
    breakdown["kernel backend"] = kernels.backend()
    return breakdown


def task_predict(spec, vocab_size, _train, test) -> dict:
    runner = make_runner(spec["framework"], vocab_size)
    runner.predict(test[:20])
    return {"predict_seconds": [timed(runner.predict, test) for _ in range(spec["repeats"])]}


def task_sweep(spec, vocab_size, _train, _test) -> dict:
    """Each point on its own (best of ``repeats``), or with ``interleave`` all points built
    first and timed in turn, round after round (median of ``repeats``), so that a ratio between
    points is not skewed by the machine's load drifting between them."""
    if spec.get("interleave"):
        runs = []
        for point in spec["points"]:
            batches = synthetic_batches(point["vocab"], point["batch"], point["length"], point["steps"])
            runner = make_runner(spec["framework"], point["vocab"], point["dim"])
            runner.train(batches[:5])
            runs.append((point, runner, batches, []))
        for _ in range(spec.get("repeats", 5)):
            for _point, runner, batches, seconds in runs:
                seconds.append(timed(runner.train, batches))
        return {"points": [{**point, "ms_per_step": 1000 * float(np.median(seconds)) / len(batches)}
                           for point, _runner, batches, seconds in runs]}
    results = []
    for point in spec["points"]:
        batches = synthetic_batches(point["vocab"], point["batch"], point["length"], point["steps"])
        runner = make_runner(spec["framework"], point["vocab"], point["dim"])
        runner.train(batches[:5])                                    # compile / warm caches
        seconds = min(timed(runner.train, batches) for _ in range(spec.get("repeats", 2)))
        results.append({**point, "ms_per_step": 1000 * seconds / len(batches)})
        del runner
    return {"points": results}




def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    needs = {"train": ("train",), "predict": ("test",), "sweep": ()}[spec["task"]]
    vocab_size, train, test = load_workload(spec["workload"], needs) if spec.get("workload") else (8185, [], [])
    result = {"task_train": task_train, "task_predict": task_predict, "task_sweep": task_sweep}[f"task_{spec['task']}"](
        spec, vocab_size, train, test)
    result["peak_rss_mb"] = peak_rss_mb()
    with open(spec["out"], "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
