"""``Sequential``: the layers in order, and one training step through them.

The training step is plain reverse-mode by hand:

    logits  = layers(ids)                      forward, each layer caching what it needs
    loss    = BCE(y, logits)                   mean over the batch
    dlogits = (sigmoid(logits) - y) / B        losses.BinaryCrossentropy.gradient
    backward through the layers in reverse     each fills its grads, returns d(input)
    optimizer on (weights, grads)              the embedding's gradient in its sparse form

The layers run as ``steps``: ``model.layers`` with each adjacent Embedding ->
GlobalAveragePooling1D pair fused into one ``layers.PooledEmbedding`` (the same gradient,
without a (B, L, D) array; ``fused=False`` runs the two layers one by one).  Keras's epoch loop
(``fit``, ``evaluate``, ``predict``, callbacks) is in ``loop.py``, the printed table in ``summary.py``.
Nothing here changes a weight except ``optimizer.apply_gradients`` and ``set_weights``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from npembed import loop
from npembed import metrics as metrics_module
from npembed.checks import check_float_dtype, check_labels, is_integer
from npembed.errors import NonFiniteLossError
from npembed.layers import Embedding, Layer, fuse_pooled_embeddings
from npembed.losses import BinaryCrossentropy
from npembed.optimizers import Gradient
from npembed.summary import summary_lines


class Sequential:
    """A stack of layers, built at construction from a seeded ``numpy.random.Generator``.

    layers: the layers in order; the first must know its output width (an ``Embedding``).
    seed:   seed for the initializers (the same seed gives the same weights).
    dtype:  "float32" (default) or "float64" (for gradient checks and tight parity).
    fused:  run Embedding -> GlobalAveragePooling1D as one ``PooledEmbedding`` step (default),
            or each layer on its own; the tests prove the two equal.

    The loss is ``BinaryCrossentropy(from_logits=True)`` until ``compile`` says otherwise.
    """

    def __init__(self, layers: Sequence[Layer], seed: int | None = None, dtype="float32",
                 name: str = "sequential", fused: bool = True):
        if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
            raise TypeError(f"Sequential takes a list of layers, got {type(layers).__name__}: "
                            "write Sequential([layer, ...])")
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        for position, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {position} is a {type(layer).__name__}, not an "
                                "npembed layer (Embedding, GlobalAveragePooling1D, Dense)")
        if len({id(layer) for layer in layers}) < len(layers):
            raise ValueError("Sequential: the same layer object appears twice; create one per position")
        if seed is not None and (not is_integer(seed) or seed < 0):
            raise ValueError(f"Sequential seed must be None or an integer >= 0, got {seed!r}")
        self.layers = list(layers)
        self.name = name
        self.dtype = check_float_dtype(dtype)
        self.seed = seed
        self.forward_output_shape = None  # the last forward's (B, units); backward checks against it
        self.optimizer = None             # compile() sets it: optimizers.Adam, SGD, RowwiseAdagrad
        self.loss = BinaryCrossentropy(from_logits=True)
        self.metrics: list[metrics_module.BinaryAccuracy] = []
        self.stop_training = False
        _uniquify_layer_names(self.layers)
        rng = np.random.default_rng(seed)
        if not isinstance(self.layers[0], Embedding):
            raise ValueError(f"the first layer must be an Embedding (it fixes the input "
                             f"width); got {type(self.layers[0]).__name__}")
        _check_shapes(self.layers)
        width = None
        for layer in self.layers:
            width = layer.build(width, rng, self.dtype)
        self.fused = fused

    @property
    def fused(self) -> bool:
        """Whether an Embedding -> GlobalAveragePooling1D pair runs as one step."""
        return len(self.steps) < len(self.layers)

    @fused.setter
    def fused(self, value: bool) -> None:
        self.steps = fuse_pooled_embeddings(self.layers) if value else list(self.layers)

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
        """Copy weights in (Keras order), cast to the model's dtype.  Every array is checked first
        (count, shape, numbers that stay finite in the model's dtype), so a refusal changes none."""
        current = self.weights
        if isinstance(new_weights, np.ndarray) or not isinstance(new_weights, Sequence):
            raise TypeError(f"set_weights takes a list of {len(current)} arrays ({self.weight_names}), "
                            f"got {type(new_weights).__name__}")
        if len(new_weights) != len(current):
            raise ValueError(f"set_weights got {len(new_weights)} arrays, the model has "
                             f"{len(current)}: {self.weight_names}")
        converted = [_checked_weight(name, old.shape, new, self.dtype)
                     for name, old, new in zip(self.weight_names, current, new_weights)]
        for old, new in zip(current, converted):          # every array checked before any is written
            old[...] = new

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    # ------------------------------------------------------------------ forward / backward
    def __call__(self, ids) -> np.ndarray:
        """ids (B, L) ints -> logits (B, 1) in the model's dtype."""
        return self.forward(ids)

    def forward(self, ids, training: bool = False) -> np.ndarray:
        """Run every step, each keeping its cache for ``backward``; returns (B, units).
        ``training`` switches Dropout on (a training step), as Keras's ``training=``."""
        out, mask = ids, None
        for step in self.steps:
            step.training = training
            step_input = out
            out = step.forward(step_input, mask)
            mask = step.compute_mask(step_input, mask)
        self.forward_output_shape = out.shape
        return out

    def backward(self, dlogits: np.ndarray) -> None:
        """Backpropagate dL/dlogits (B, 1) through every step, filling each layer's grads."""
        expected = self.forward_output_shape
        if expected is None:
            raise RuntimeError("backward() needs a forward() of the same batch first (or call "
                               "compute_gradients(ids, labels), which does both)")
        if np.shape(dlogits) != expected:
            raise ValueError(f"backward() takes dL/dlogits shaped like the last forward's output, "
                             f"{expected}, got {np.shape(dlogits)}")
        grad = dlogits
        for step in reversed(self.steps):
            grad = step.backward(grad)

    def trainable_gradients(self) -> list[Gradient]:
        """The last backward's gradients as the optimizer takes them, aligned with ``weights``:
        arrays, and the embedding's sparse form (``IndexedSlices`` or ``PooledSlices``)."""
        return [layer.grads[key] for layer in self.layers for key in layer.params]

    def gradients(self) -> list[np.ndarray]:
        """The last backward's gradients as dense copies, aligned with ``get_weights()``."""
        return [grad.copy() if isinstance(grad, np.ndarray) else grad.to_dense()
                for grad in self.trainable_gradients()]

    def compute_gradients(self, ids, labels) -> tuple[float, list[np.ndarray]]:
        """Loss and dense gradients of the loss, aligned with ``get_weights()``.  The embedding's
        gradient in TensorFlow's sparse form stays in ``model.layers[0].grads['embeddings']``."""
        loss, _ = self._forward_backward(ids, labels)
        return loss, self.gradients()

    def _forward_backward(self, ids, labels) -> tuple[float, np.ndarray]:
        logits = self.forward(ids, training=True)
        if logits.ndim != 2 or logits.shape[1] != 1:
            raise ValueError(f"the model outputs shape {logits.shape}; the loss needs one logit per "
                             "review, (batch, 1): end the model with GlobalAveragePooling1D ... Dense(1)")
        labels = check_labels(labels, logits.shape[0])
        loss = self.loss(labels, logits)
        if not np.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss is {loss} on this batch: training has diverged (or the weights hold "
                "NaN/inf). No weight was changed; lower the learning rate or restore a checkpoint.")
        self.backward(self.loss.gradient(labels, logits))
        return loss, logits

    # ------------------------------------------------------------------ training
    compile = loop.compile            # optimizer, loss and metrics, as Keras's (loop.py)

    def train_step(self, ids, labels) -> tuple[float, np.ndarray]:
        """One optimizer step on one batch: (the batch's loss before the step, its logits (B, 1)).
        (fastText's one step per review is ``per_review.train_step``, a choice of ``fit``.)"""
        if self.optimizer is None:
            raise RuntimeError("call model.compile(...) before training")
        loss, logits = self._forward_backward(ids, labels)
        self.optimizer.apply_gradients(self.trainable_gradients(), self.weights)
        return loss, logits

    def train_on_batch(self, ids, labels) -> float:
        """One optimizer step on one batch; returns the batch's loss before the step."""
        return self.train_step(ids, labels)[0]

    fit = loop.fit                    # Keras's epochs, validation, callbacks, History (loop.py)
    evaluate = loop.evaluate          # loss and the compiled metrics over batches (loop.py)
    predict = loop.predict            # logits for every batch (loop.py)

    def summary(self, print_fn: Callable[[str], None] = print) -> None:
        """A Keras-like table: layer, output shape, parameter count, and the totals."""
        for line in summary_lines(self):
            print_fn(line)


def _check_shapes(layers: Sequence[Layer]) -> None:
    """Refuse a stack whose layers do not fit (NumPy would broadcast some of them silently):
    token ids (B, L) go into the first layer, and each layer's ``output_shape`` of the shape
    before it must exist (it raises ValueError for an input rank it does not take)."""
    shape: tuple = (None, None)
    for position, layer in enumerate(layers):
        if position and isinstance(layer, Embedding):
            raise ValueError(f"Sequential: layer {position} ({layer.name}) is an Embedding; only the "
                             "first layer can take token ids")
        try:
            shape = layer.output_shape(shape)
        except ValueError as err:
            hint = (": put GlobalAveragePooling1D() (or another layer that reduces the time axis) "
                    "after the Embedding") if len(shape) == 3 else ""
            raise ValueError(f"Sequential: layer {position} ({layer.name}): {err}{hint}") from None


def _checked_weight(name: str, shape: tuple, value, dtype: np.dtype) -> np.ndarray:
    """``value`` as an array of ``dtype``, or ValueError: another shape, not numbers, or NaN,
    inf or a value beyond ``dtype``'s range (1e39 is inf in float32)."""
    if np.shape(value) != shape:
        raise ValueError(f"set_weights: {name} has shape {shape}, got {np.shape(value)}")
    value = np.asarray(value)
    if value.dtype.kind not in "iuf":
        raise TypeError(f"set_weights: {name} must hold numbers, got dtype {value.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        converted = value.astype(dtype)
    if not np.all(np.isfinite(converted)):
        raise ValueError(f"set_weights: {name} holds NaN, inf or values beyond {np.dtype(dtype).name}'s "
                         f"range (largest {np.finfo(dtype).max:.3g}); no weight was changed")
    return converted


def _uniquify_layer_names(layers: Sequence[Layer]) -> None:
    """Keras's names: the second ``dense`` becomes ``dense_1``, and so on."""
    seen: dict[str, int] = {}
    for layer in layers:
        base = layer.name
        if base in seen:
            seen[base] += 1
            layer.name = f"{base}_{seen[base]}"
        else:
            seen[base] = 0
