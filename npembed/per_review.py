"""One optimizer step per review, as fastText trains: plain SGD or row-wise Adagrad.

fastText (``src/fasttext.cc``, ``FastText::supervised``; ``src/model.cc``, ``Model::update``)
takes one step per line: average the line's input rows, score, and move the output layer and
every input row the line looked up, before it reads the next line.  For npembed's model
``Embedding(V, D, mask_zero=True) -> GlobalAveragePooling1D -> Dense(1)`` with sigmoid
cross-entropy, review b with its n masked-in ids id_1 .. id_n, label y, and c_r of its positions
holding row r has the gradients (docs/gradients_appendix.md, the n-gram model and its SGD, at
B = 1), with ``w_out`` (D,) and ``b_out`` the output Dense's kernel and bias::

    pooled = (1/n) sum_i E[id_i]     z = pooled . w_out + b_out     dz = sigmoid(z) - y = dloss/dz
    dw_out = dz pooled     db_out = dz     dE[r] = c_r dz w_out / n    (each row of the review: along w_out)

- ``optimizers.SGD(per_review=True)``, fastText's own: ``weight -= lr * gradient`` for each;
- ``optimizers.RowwiseAdagrad``: ``A_r += mean_j dE[r, j]**2``, ``E[r] -= lr dE[r] / (sqrt(A_r) + eps)``
  per row, element-wise for w_out and b_out (docs/gradients_appendix.md, row-wise Adagrad).

A batch of B reviews is B such steps in order, all at the rate ``optimizer.current_rate()`` of
the batch.  ``review_sgd_reference`` and ``review_adagrad_reference`` are those definitions,
through the framework's own forward and backward; the native kernels (``csrc/review_steps.c``,
``review_steps_sgd`` and ``review_steps_adagrad``) do the same arithmetic in two passes per review (float64
sums, rounded once) and are held to them by the tests.  Unlike a batch step they change the
weights as they go, so a non-finite loss is reported after the batch, not before.
"""
from __future__ import annotations

import numpy as np

from npembed import kernels
from npembed.checks import check_labels, check_token_ids
from npembed.layers import Dense, PooledEmbedding
from npembed.losses import BinaryCrossentropy
from npembed.optimizers import RowwiseAdagrad


def check_supported(model) -> None:
    """Raise ValueError unless ``model`` is Embedding(mask_zero) -> average -> Dense(1, linear)
    with ``BinaryCrossentropy(from_logits=True)``, the model the per-review step is written for."""
    steps = model.steps
    ok = (len(steps) == 2 and isinstance(steps[0], PooledEmbedding) and steps[0].embedding.mask_zero
          and isinstance(steps[1], Dense) and steps[1].units == 1 and steps[1].activation is None
          and isinstance(model.loss, BinaryCrossentropy))
    if not ok:
        raise ValueError(f"per-review {type(model.optimizer).__name__} (fastText's step) needs "
                         "Embedding(mask_zero=True) -> GlobalAveragePooling1D -> Dense(1) with "
                         "BinaryCrossentropy(from_logits=True), fused; this model runs "
                         f"{[type(s).__name__ for s in steps]}")


def _one_review(model, ids, labels, b):
    """Forward and backward on review b alone: (logit, loss, its gradients as the optimizer takes them)."""
    one_ids, one_label = ids[b:b + 1], labels[b:b + 1]
    out = model.forward(one_ids)
    logit, loss = out[0, 0], model.loss(one_label, out)
    model.backward(model.loss.gradient(one_label, out))
    return logit, loss, model.trainable_gradients()


def review_sgd_reference(model, ids: np.ndarray, labels: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """B framework steps of plain SGD at batch 1, in order: (logits (B,), losses (B,)) of each
    review before its own step.  The definition the native kernel is tested against."""
    logits, losses = np.empty(len(ids), model.dtype), np.empty(len(ids), model.dtype)
    for b in range(len(ids)):
        logits[b], losses[b], _ = _one_review(model, ids, labels, b)
        for weight, grad in zip(model.weights, model.gradients()):
            weight -= weight.dtype.type(rate) * grad
    return logits, losses


def review_adagrad_reference(model, ids: np.ndarray, labels: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """B framework steps of row-wise Adagrad at batch 1, in order (``optimizers.RowwiseAdagrad``
    on the distinct rows of each review's gradient): (logits (B,), losses (B,)) before each
    review's step.  The definition the native kernel is tested against."""
    optimizer = model.optimizer
    logits, losses = np.empty(len(ids), model.dtype), np.empty(len(ids), model.dtype)
    for b in range(len(ids)):
        logits[b], losses[b], grads = _one_review(model, ids, labels, b)
        table, table_acc = model.weights[0], optimizer.accumulators[0]
        lr, eps = table.dtype.type(rate), table.dtype.type(optimizer.epsilon)
        rows, sums, _ = grads[0].row_sums()                  # distinct rows, their summed gradient
        held = np.any(sums != 0, axis=1)                    # the padding row is listed with 0
        rows, sums = rows[held], sums[held]
        table_acc[rows] += np.mean(np.square(sums, dtype=np.float64), axis=1).astype(table.dtype)
        row_lr = lr if optimizer.row_rates is None else lr * optimizer.row_rates[rows]
        table[rows] -= sums * (row_lr / (np.sqrt(table_acc[rows]) + eps))[:, None]
        for weight, acc, grad in zip(model.weights[1:], optimizer.accumulators[1:], grads[1:]):
            acc += grad * grad
            weight -= lr * grad / (np.sqrt(acc) + eps)
    return logits, losses


def review_step(model, ids, labels) -> tuple[float, np.ndarray]:
    """One batch of per-review steps of ``model.optimizer`` (SGD or RowwiseAdagrad): (mean loss of
    the reviews before their steps, logits (B, 1)); counts one optimizer step (the rate decays
    per batch)."""
    check_supported(model)
    embedding, dense = model.steps
    ids = check_token_ids(ids, embedding.embedding.input_dim)
    labels = check_labels(labels, ids.shape[0]).astype(model.dtype).reshape(-1, 1)
    optimizer = model.optimizer
    adagrad = isinstance(optimizer, RowwiseAdagrad)
    if adagrad:
        if not optimizer.accumulators:
            optimizer.build(model.weights)
        optimizer.check_accumulators(model.weights)
    rate = optimizer.current_rate()
    table, kernel, bias = embedding.params["embeddings"], dense.params["kernel"], dense.params["bias"]
    if kernels.uses_native(table) and not (adagrad and optimizer.row_rates is not None):
        from npembed import native
        if adagrad:
            table_acc, kernel_acc, bias_acc = optimizer.accumulators
            logits, losses = native.review_adagrad(ids, ids != 0, labels, table, table_acc, kernel, kernel_acc,
                                                   bias, bias_acc, rate, optimizer.epsilon)
        else:
            logits, losses = native.review_sgd(ids, ids != 0, labels, table, kernel, bias, rate)
    elif adagrad:
        logits, losses = review_adagrad_reference(model, ids, labels, rate)
    else:
        logits, losses = review_sgd_reference(model, ids, labels, rate)
    optimizer.iterations += 1
    loss = float(np.mean(losses, dtype=np.float64))
    if not np.isfinite(loss):
        from npembed.model import NonFiniteLossError
        raise NonFiniteLossError(f"the loss is {loss} on this batch: per-review "
                                 f"{type(optimizer).__name__} has diverged; lower the learning rate")
    return loss, logits.reshape(-1, 1)

