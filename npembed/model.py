"""``Sequential``: the layers in order, with Keras's training loop around them.

The training step is plain reverse-mode by hand:

    logits = layers(ids)                       forward, each layer caching what it needs
    loss   = BCE(y, logits)                    mean over the batch
    dlogits = (sigmoid(logits) - y) / B        losses.BinaryCrossentropy.gradient
    backward through the layers in reverse     each fills its grads, returns d(input)
    Adam on (weights, grads)                   the embedding's gradient in its sparse form

Nothing here changes a weight except ``optimizer.apply_gradients`` and ``set_weights``.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, Callable, Sequence

import numpy as np

from npembed import losses as losses_module
from npembed import metrics as metrics_module
from npembed import kernels
from npembed.checks import check_float_dtype, check_labels, check_token_ids
from npembed.layers import Embedding, GlobalAveragePooling1D, Layer
from npembed.sparse import PooledSlices
from npembed.optimizers import Adam


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; no weight was changed by the step that saw it."""


class Callback:
    """Hooks that ``fit`` calls; override what you need (as ``keras.callbacks.Callback``)."""

    model: "Sequential"

    def on_train_begin(self) -> None: ...
    def on_epoch_begin(self, epoch: int) -> None: ...
    def on_train_batch_end(self, step: int, logs: dict) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...
    def on_train_end(self) -> None: ...


class History(Callback):
    """``history.history['loss']`` etc., one value per epoch, and ``history.epoch``."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


class Sequential:
    """A stack of layers, built at construction from a seeded ``numpy.random.Generator``.

    layers: the layers in order; the first must know its output width (an ``Embedding``).
    seed:   seed for the initializers (the same seed gives the same weights).
    dtype:  "float32" (default) or "float64" (for gradient checks and tight parity).
    fused:  when the model starts with Embedding -> GlobalAveragePooling1D, backpropagate
            through the pair in factored form (``sparse.PooledSlices``): the same gradient
            without materialising one slice per position.  ``fused=False`` runs every layer's
            own ``backward``; the tests prove the two equal.
    """

    def __init__(self, layers: Sequence[Layer], seed: int | None = None, dtype="float32",
                 name: str = "sequential", fused: bool = True):
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        self.layers = list(layers)
        self.name = name
        self.dtype = check_float_dtype(dtype)
        self.seed = seed
        self.optimizer: Adam | None = None
        self.loss: losses_module.BinaryCrossentropy | None = None
        self.metrics: list[metrics_module.BinaryAccuracy] = []
        self.stop_training = False
        self._last_logits: np.ndarray | None = None
        self._uniquify_layer_names()
        self.fused = bool(fused) and len(self.layers) >= 2 and isinstance(self.layers[0], Embedding) \
            and isinstance(self.layers[1], GlobalAveragePooling1D)
        rng = np.random.default_rng(seed)
        width = None
        for layer in self.layers:
            if width is None and not isinstance(layer, Embedding):
                raise ValueError(f"the first layer must be an Embedding (it fixes the input "
                                 f"width); got {type(layer).__name__}")
            width = layer.build(width, rng, self.dtype)

    # ------------------------------------------------------------------ weights
    @property
    def weights(self) -> list[np.ndarray]:
        """The live weight arrays, in Keras order (embeddings, kernel, bias, kernel, bias)."""
        return [w for layer in self.layers for w in layer.params.values()]

    @property
    def weight_names(self) -> list[str]:
        """``'embedding/embeddings'``, ``'dense/kernel'``, ... aligned with ``weights``."""
        return [f"{layer.name}/{key}" for layer in self.layers for key in layer.params]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, in the order ``keras_model.set_weights`` expects."""
        return [w.copy() for w in self.weights]

    def set_weights(self, new_weights: Sequence[np.ndarray]) -> None:
        """Copy weights in (Keras order), checking count and shapes; cast to the model's dtype."""
        current = self.weights
        if len(new_weights) != len(current):
            raise ValueError(f"set_weights got {len(new_weights)} arrays, the model has "
                             f"{len(current)}: {self.weight_names}")
        for name, old, new in zip(self.weight_names, current, new_weights):
            new = np.asarray(new)
            if new.shape != old.shape:
                raise ValueError(f"set_weights: {name} has shape {old.shape}, got {new.shape}")
        for old, new in zip(current, new_weights):
            old[...] = np.asarray(new, dtype=self.dtype)

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    # ------------------------------------------------------------------ forward / backward
    def __call__(self, ids) -> np.ndarray:
        """ids (B, L) ints -> logits (B, 1) in the model's dtype."""
        return self.forward(ids)

    def forward(self, ids) -> np.ndarray:
        """Run every layer, each keeping its cache for ``backward``; returns (B, units)."""
        out, mask = ids, None
        layers = self.layers
        if self.fused:
            embedding = self.layers[0]
            ids = check_token_ids(ids, embedding.input_dim)
            token_mask = embedding.compute_mask(ids, None)
            out, memo = kernels.pooled_lookup(ids, embedding.params["embeddings"], token_mask)
            embedding.cache = {"ids": ids, "mask": token_mask, "memo": memo}
            layers = self.layers[2:]
        for layer in layers:
            layer_input = out
            out = layer.forward(layer_input, mask)
            mask = layer.compute_mask(layer_input, mask)
        return out

    def backward(self, dlogits: np.ndarray) -> None:
        """Backpropagate dL/dlogits (B, 1) through every layer, filling each layer's grads
        (the embedding's in its sparse form, ``layer.sparse_grads``)."""
        grad = dlogits
        first = 2 if self.fused else 0
        for layer in reversed(self.layers[first:]):
            grad = layer.backward(grad)
        if self.fused:
            embedding = self.layers[0]
            embedding.sparse_grads["embeddings"] = PooledSlices(
                embedding.cache["ids"], grad, embedding.cache["mask"], embedding.input_dim,
                embedding.cache["memo"])
            embedding.grads.pop("embeddings", None)

    def gradients(self) -> list[np.ndarray]:
        """Dense gradients of the last backward pass, aligned with ``get_weights()``."""
        dense = []
        for layer in self.layers:
            sparse = getattr(layer, "sparse_grads", {})
            dense.extend(sparse[key].to_dense() if key in sparse else layer.grads[key].copy()
                         for key in layer.params)
        return dense

    def compute_gradients(self, ids, labels) -> tuple[float, list[np.ndarray]]:
        """Loss and dense gradients of the loss, aligned with ``get_weights()``.

        Uses the compiled loss, or ``BinaryCrossentropy(from_logits=True)`` when not compiled.
        The embedding's gradient in TensorFlow's sparse form is in
        ``model.layers[0].sparse_grads['embeddings']`` afterwards.
        """
        loss = self._forward_backward(ids, labels)
        return loss, self.gradients()

    def _forward_backward(self, ids, labels) -> float:
        loss_fn = self.loss or losses_module.BinaryCrossentropy(from_logits=True)
        logits = self.forward(ids)
        labels = check_labels(labels, logits.shape[0])
        loss = loss_fn(labels, logits)
        if not np.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss is {loss} on this batch: training has diverged (or the weights hold "
                "NaN/inf). No weight was changed; lower the learning rate or restore a checkpoint.")
        self.backward(loss_fn.gradient(labels, logits))
        self._last_logits = logits
        return loss

    # ------------------------------------------------------------------ training
    def compile(self, optimizer: Adam | str = "adam",
                loss: losses_module.BinaryCrossentropy | None = None,
                metrics: Sequence[Any] = ("accuracy",)) -> None:
        """Choose the optimizer, loss and metrics, as ``keras.Model.compile``."""
        if optimizer == "adam":
            optimizer = Adam()
        if not isinstance(optimizer, Adam):
            raise TypeError(f"optimizer must be npembed.optimizers.Adam or 'adam', got {optimizer!r}")
        self.optimizer = optimizer
        self.loss = loss or losses_module.BinaryCrossentropy(from_logits=True)
        self.metrics = [metrics_module.get(m) for m in metrics]

    def _trainable_gradients(self) -> list:
        """The gradients the optimizer receives: sparse for embeddings, dense otherwise."""
        grads = []
        for layer in self.layers:
            sparse = getattr(layer, "sparse_grads", {})
            grads.extend(sparse[key] if key in sparse else layer.grads[key] for key in layer.params)
        return grads

    def train_on_batch(self, ids, labels) -> float:
        """One Adam step on one batch; returns the batch's loss before the step."""
        if self.optimizer is None:
            raise RuntimeError("call model.compile(...) before training")
        loss = self._forward_backward(ids, labels)
        self.optimizer.apply_gradients(self._trainable_gradients(), self.weights)
        return loss

    def fit(self, batches: Iterable, epochs: int = 1, validation_data: Iterable | None = None,
            validation_steps: int | None = None, steps_per_epoch: int | None = None,
            callbacks: Sequence[Callback] = (), initial_epoch: int = 0, verbose: int = 1,
            history: History | None = None) -> History:
        """Train for ``epochs`` passes over ``batches`` (an iterable of (ids, labels), iterated
        afresh each epoch, as a tf.data dataset is).

        Per epoch, like Keras: ``loss`` is the batch-size-weighted mean of the batch losses,
        each metric is accumulated over the epoch, and with ``validation_data`` the model is
        evaluated on the first ``validation_steps`` batches of a fresh pass (``val_`` keys).
        """
        if self.optimizer is None:
            raise RuntimeError("call model.compile(...) before fit")
        if not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        history = history or History()
        callbacks = [history, *callbacks]
        if verbose:
            callbacks.append(_PrintEpochSummary(epochs))
        for callback in callbacks:
            callback.model = self
        self.stop_training = False
        for callback in callbacks:
            callback.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            logs = self._train_epoch(batches, steps_per_epoch, callbacks)
            if validation_data is not None:
                val = self.evaluate(validation_data, steps=validation_steps)
                logs.update({f"val_{key}": value for key, value in val.items()})
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end()
        return history

    def _train_epoch(self, batches, steps, callbacks) -> dict:
        tracker = _LossAndMetrics(self.metrics)
        for step, (ids, labels) in enumerate(_take(batches, steps)):
            loss = self.train_on_batch(ids, labels)
            tracker.update(loss, labels, self._last_logits)
            logs = tracker.result()
            for callback in callbacks:
                callback.on_train_batch_end(step, logs)
        if tracker.count == 0:
            raise ValueError("the training data yielded no batch")
        return tracker.result()

    # ------------------------------------------------------------------ inference
    def evaluate(self, batches: Iterable, steps: int | None = None) -> dict[str, float]:
        """Loss (batch-size-weighted mean) and metrics over ``batches`` (first ``steps`` only)."""
        loss_fn = self.loss or losses_module.BinaryCrossentropy(from_logits=True)
        metrics = [metrics_module.get(m.name) for m in self.metrics] or [metrics_module.get("accuracy")]
        tracker = _LossAndMetrics(metrics)
        for ids, labels in _take(batches, steps):
            logits = self.forward(ids)
            labels = check_labels(labels, logits.shape[0])
            tracker.update(loss_fn(labels, logits), labels, logits)
        if tracker.count == 0:
            raise ValueError("the evaluation data yielded no batch")
        return tracker.result()

    def predict(self, data, batch_size: int = 32) -> np.ndarray:
        """Logits (N, 1) for a padded id array (N, L) split into ``batch_size`` rows, or for an
        iterable of batches (each ``ids`` or ``(ids, labels)``), concatenated in order."""
        if isinstance(data, np.ndarray) or (isinstance(data, list) and data and np.isscalar(data[0][0])):
            ids = np.asarray(data)
            chunks = (ids[i:i + batch_size] for i in range(0, ids.shape[0], batch_size))
        else:
            chunks = (batch[0] if isinstance(batch, tuple) else batch for batch in data)
        outputs = [self.forward(chunk) for chunk in chunks]
        if not outputs:
            raise ValueError("predict got no data")
        return np.concatenate(outputs, axis=0)

    # ------------------------------------------------------------------ description
    def summary(self, print_fn: Callable[[str], None] = print) -> None:
        """A Keras-like table: layer, output shape, parameter count, and the totals."""
        rows = []
        shape: tuple = (None, None)
        for layer in self.layers:
            shape = layer.output_shape(shape)
            rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), f"{layer.count_params():,}"))
        widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in
                  enumerate(("Layer (type)", "Output Shape", "Param #"))]
        line = "+" + "+".join("-" * w for w in widths) + "+"
        fmt = lambda cells: "|" + "|".join(  # noqa: E731
            f" {c:<{w - 1}}" if i < 2 else f"{c:>{w - 1}} " for i, (c, w) in enumerate(zip(cells, widths))) + "|"
        total = self.count_params()
        size = total * self.dtype.itemsize
        lines = [f'Model: "{self.name}"', line, fmt(("Layer (type)", "Output Shape", "Param #")),
                 line.replace("-", "=")]
        lines += [fmt(r) for r in rows]
        lines += [line, f" Total params: {total:,} ({size / 1024:.2f} KB)",
                  f" Trainable params: {total:,} ({size / 1024:.2f} KB)",
                  " Non-trainable params: 0 (0.00 B)"]
        for text in lines:
            print_fn(text)

    def _uniquify_layer_names(self) -> None:
        seen: dict[str, int] = {}
        for layer in self.layers:
            base = layer.name
            if base in seen:
                seen[base] += 1
                layer.name = f"{base}_{seen[base]}"
            else:
                seen[base] = 0


class _LossAndMetrics:
    """Keras's epoch bookkeeping: loss as a batch-size-weighted mean, metrics accumulated."""

    def __init__(self, metrics: Sequence[metrics_module.BinaryAccuracy]):
        self.metrics = list(metrics)
        for metric in self.metrics:
            metric.reset_state()
        self.loss_sum = 0.0
        self.count = 0

    def update(self, loss: float, labels: np.ndarray, logits: np.ndarray) -> None:
        self.loss_sum += loss * logits.shape[0]
        self.count += logits.shape[0]
        for metric in self.metrics:
            metric.update_state(labels, logits)

    def result(self) -> dict[str, float]:
        logs = {"loss": self.loss_sum / self.count if self.count else float("nan")}
        logs.update({metric.name: metric.result() for metric in self.metrics})
        return logs


class _PrintEpochSummary(Callback):
    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs):
        print(f"Epoch {epoch + 1}/{self.epochs} - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))


def _take(batches: Iterable, steps: int | None):
    """The first ``steps`` batches (all of them for None), without drawing one more."""
    if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
    return itertools.islice(batches, steps)
