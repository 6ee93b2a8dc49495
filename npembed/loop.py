"""Keras's loops around ``Sequential``: ``fit``, ``evaluate``, ``predict``, callbacks, ``History``.

Per epoch, as Keras reports it: ``loss`` is the batch-size-weighted mean of the batch losses
(each taken before that batch's step), each metric is accumulated over the epoch, and with
``validation_data`` the model is evaluated on the first ``validation_steps`` batches of a fresh
pass (``val_`` keys).  The step itself is ``Sequential.train_step``, or the ``step`` given to
``fit`` (``per_review.train_step``: one step per review); nothing here touches a weight.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from typing import Callable, Sequence

import numpy as np

from npembed.checks import check_labels, is_integer
from npembed.losses import BinaryCrossentropy
from npembed.metrics import get as get_metric
from npembed.optimizers import Adam


class Callback:
    """Hooks that ``fit`` calls; override what you need (as ``keras.callbacks.Callback``)."""

    model: object

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


OPTIMIZER_METHODS = ("apply_gradients", "check_fits", "state", "load_state")


def compile(model, optimizer="adam", loss=None, metrics: Sequence = ("accuracy",)) -> None:
    """Choose the optimizer, loss and metrics, as ``keras.Model.compile``.

    optimizer: "adam", or an object with the optimizers' interface (``apply_gradients``,
    ``check_fits``, ``state``, ``load_state``, ``iterations``; ``optimizers.Adam``, ``SGD``,
    ``RowwiseAdagrad``).  loss: "binary_crossentropy" (the default,
    ``BinaryCrossentropy(from_logits=True)``) or any object with ``loss(labels, logits)`` -> the
    batch's mean loss and ``loss.gradient(labels, logits)`` -> dloss/dlogits.  metrics: names or
    metric objects.  An optimizer that already holds state for weights of other shapes is refused.
    """
    if isinstance(optimizer, str) and optimizer == "adam":
        optimizer = Adam()
    missing = [name for name in OPTIMIZER_METHODS if not callable(getattr(optimizer, name, None))]
    if missing:
        raise TypeError("optimizer must be npembed.optimizers.Adam, SGD, RowwiseAdagrad or 'adam' "
                        f"(an object with {', '.join(OPTIMIZER_METHODS)}), got {optimizer!r}")
    optimizer.check_fits(model.weights)
    if loss is None or (isinstance(loss, str) and loss == "binary_crossentropy"):
        loss = BinaryCrossentropy(from_logits=True)
    if not (callable(loss) and callable(getattr(loss, "gradient", None))):
        raise TypeError("loss must be npembed.losses.BinaryCrossentropy(from_logits=True), "
                        "'binary_crossentropy', or an object with loss(labels, logits) and "
                        f"loss.gradient(labels, logits), got {loss!r}")
    if metrics is None:
        metrics = ()
    elif isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
        metrics = (metrics,)
    model.optimizer = optimizer
    model.loss = loss
    model.metrics = [get_metric(m) for m in metrics]


def fit(model, batches: Iterable, epochs: int = 1, validation_data: Iterable | None = None,
        validation_steps: int | None = None, steps_per_epoch: int | None = None,
        callbacks: Sequence[Callback] = (), initial_epoch: int = 0, verbose: int = 1,
        history: History | None = None, step: Callable | None = None) -> History:
    """Train ``model`` for ``epochs`` passes over ``batches`` (an iterable of (ids, labels),
    iterated afresh each epoch, as a tf.data dataset is); returns the History.

    ``step(model, ids, labels) -> (loss, logits)`` trains on one batch: by default
    ``model.train_step`` (one optimizer step on the batch's mean gradient);
    ``per_review.train_step`` takes one step per review, as fastText does."""
    if model.optimizer is None:
        raise RuntimeError("call model.compile(...) before fit")
    if not is_integer(epochs) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not is_integer(initial_epoch) or not 0 <= initial_epoch <= epochs:
        raise ValueError(f"initial_epoch must be an integer from 0 to epochs ({epochs}), got {initial_epoch!r}")
    _check_iterable(batches, "fit's batches")
    if validation_data is not None:
        _check_iterable(validation_data, "validation_data")
    if callbacks is None:
        callbacks = ()
    elif isinstance(callbacks, Callback):
        callbacks = (callbacks,)
    for callback in callbacks:
        missing = [hook for hook in ("on_train_begin", "on_epoch_begin", "on_train_batch_end",
                                     "on_epoch_end", "on_train_end") if not callable(getattr(callback, hook, None))]
        if missing:
            raise TypeError(f"callback {callback!r} is not an npembed.Callback (it lacks {', '.join(missing)})")
    history = history or History()
    callbacks = [history, *callbacks] + ([_PrintEpochSummary(epochs)] if verbose else [])
    for callback in callbacks:
        callback.model = model
    model.stop_training = False
    _call(callbacks, "on_train_begin")
    for epoch in range(initial_epoch, epochs):
        _call(callbacks, "on_epoch_begin", epoch)
        logs = _train_epoch(model, batches, steps_per_epoch, callbacks, epoch > initial_epoch, step)
        if validation_data is not None:
            validation = evaluate(model, validation_data, steps=validation_steps)
            logs.update({f"val_{key}": value for key, value in validation.items()})
        _call(callbacks, "on_epoch_end", epoch, logs)
        if model.stop_training:
            break
    _call(callbacks, "on_train_end")
    return history


def _train_epoch(model, batches, steps, callbacks, again: bool = False, step: Callable | None = None) -> dict:
    tally = LossAndMetrics(model.metrics)
    for index, batch in enumerate(_take(batches, steps)):
        ids, labels = _pair(batch)
        loss, logits = step(model, ids, labels) if step is not None else model.train_step(ids, labels)
        tally.update(loss, labels, logits)
        _call(callbacks, "on_train_batch_end", index, tally.result())
    if tally.count == 0:
        raise ValueError("the training data yielded no batch" + (
            " in this epoch: an iterator or generator is used up by the first epoch; pass something "
            "that can be iterated again (a list, npembed's Batches)" if again else ""))
    return tally.result()


def _pair(batch):
    """A batch as (ids, labels), or TypeError saying what a batch must be."""
    if isinstance(batch, np.ndarray) or not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"each batch must be a pair (ids, labels), got {type(batch).__name__}"
                        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                        + ": iterate over [(ids, labels), ...], not over one id array")
    return batch


def _check_iterable(data, what: str) -> None:
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(f"{what} must be an iterable of (ids, labels) batches, got {type(data).__name__}")


def evaluate(model, batches: Iterable, steps: int | None = None) -> dict[str, float]:
    """Loss (batch-size-weighted mean) and the compiled metrics (copies, so a training epoch's
    tally is left alone) over ``batches``, the first ``steps`` only when given."""
    _check_iterable(batches, "evaluate's batches")
    metrics = [copy.copy(metric) for metric in model.metrics] or [get_metric("accuracy")]
    tally = LossAndMetrics(metrics)
    for batch in _take(batches, steps):
        ids, labels = _pair(batch)
        logits = model.forward(ids)
        labels = check_labels(labels, logits.shape[0])
        tally.update(model.loss(labels, logits), labels, logits)
    if tally.count == 0:
        raise ValueError("the evaluation data yielded no batch")
    return tally.result()


def predict(model, data, batch_size: int = 32) -> np.ndarray:
    """Logits (N, 1) for a padded id array (N, L) split into ``batch_size`` rows, or for an
    iterable of batches (each ``ids`` or ``(ids, labels)``), concatenated in order."""
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_iterable(data, "predict's data")
    if isinstance(data, np.ndarray) or (isinstance(data, list) and data and np.isscalar(data[0][0])):
        ids = np.asarray(data)
        chunks = (ids[i:i + batch_size] for i in range(0, ids.shape[0], batch_size))
    else:
        chunks = (batch[0] if isinstance(batch, tuple) else batch for batch in data)
    outputs = [model.forward(chunk) for chunk in chunks]
    if not outputs:
        raise ValueError("predict got no data")
    return np.concatenate(outputs, axis=0)


class LossAndMetrics:
    """Keras's epoch bookkeeping: loss as a batch-size-weighted mean, metrics accumulated."""

    def __init__(self, metrics):
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


def _call(callbacks: Sequence[Callback], hook: str, *args) -> None:
    for callback in callbacks:
        getattr(callback, hook)(*args)


def _take(batches: Iterable, steps: int | None):
    """The first ``steps`` batches (all of them for None), without drawing one more."""
    if steps is not None and (not is_integer(steps) or steps < 1):
        raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
    return itertools.islice(batches, steps)
