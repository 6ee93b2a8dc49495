"""fastText's training step: plain SGD one review at a time, for the n-gram model.

fastText (``src/fasttext.cc``, ``FastText::supervised``; ``src/model.cc``, ``Model::update``)
takes one SGD step per line: average the line's input rows, score, and move the output layer
and every input row the line looked up, before it reads the next line.  For npembed's model
``Embedding(V, D, mask_zero=True) -> GlobalAveragePooling1D -> Dense(1)`` with sigmoid
cross-entropy that step, on review b with its n masked-in positions and label y, is::

    h = (1/n) sum_t E[x_t]          z = h . k + c          e = sigmoid(z) - y = dloss/dz
    k -= lr e h      c -= lr e      E[x_t] -= lr e k_old / n   at each of the n positions

which is exactly the framework's ``SGD`` step on a batch of one review (the gradients of
docs/gradients.md sections 3 and 8 at B = 1; section 9 writes this out).  A batch of B reviews
is B such steps in order, all at the rate ``optimizer.current_rate()`` of the batch.

``review_sgd_reference`` is that definition, through the framework's own forward and backward;
the native kernel (``native.c``, ``review_sgd``) does the same arithmetic in one pass per review
(float64 sums, rounded once) and is held to it by the tests.  Unlike a batch step it changes the
weights as it goes, so a non-finite loss is reported after the batch, not before.
"""
from __future__ import annotations

import numpy as np

from npembed import kernels
from npembed.checks import check_labels, check_token_ids
from npembed.layers import Dense, PooledEmbedding
from npembed.losses import BinaryCrossentropy


def check_supported(model) -> None:
    """Raise ValueError unless ``model`` is Embedding(mask_zero) -> average -> Dense(1, linear)
    with ``BinaryCrossentropy(from_logits=True)``, the model the per-review step is written for."""
    steps = model.steps
    ok = (len(steps) == 2 and isinstance(steps[0], PooledEmbedding) and steps[0].embedding.mask_zero
          and isinstance(steps[1], Dense) and steps[1].units == 1 and steps[1].activation is None
          and isinstance(model.loss, BinaryCrossentropy))
    if not ok:
        raise ValueError("per-review SGD (fastText's step) needs Embedding(mask_zero=True) -> "
                         "GlobalAveragePooling1D -> Dense(1) with BinaryCrossentropy(from_logits=True), "
                         f"fused; this model runs {[type(s).__name__ for s in steps]}")


def review_sgd_reference(model, ids: np.ndarray, labels: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """B framework steps of plain SGD at batch 1, in order: (logits (B,), losses (B,)) of each
    review before its own step.  The definition the native kernel is tested against."""
    logits, losses = np.empty(len(ids), model.dtype), np.empty(len(ids), model.dtype)
    for b in range(len(ids)):
        one_ids, one_label = ids[b:b + 1], labels[b:b + 1]
        out = model.forward(one_ids)
        logits[b], losses[b] = out[0, 0], model.loss(one_label, out)
        model.backward(model.loss.gradient(one_label, out))
        for weight, grad in zip(model.weights, model.gradients()):
            weight -= weight.dtype.type(rate) * grad
    return logits, losses


def review_sgd_step(model, ids, labels) -> tuple[float, np.ndarray]:
    """One batch of per-review SGD steps: (mean loss of the reviews before their steps, logits
    (B, 1)); counts one optimizer step (the rate decays per batch)."""
    check_supported(model)
    embedding, dense = model.steps
    ids = check_token_ids(ids, embedding.embedding.input_dim)
    labels = check_labels(labels, ids.shape[0]).astype(model.dtype).reshape(-1, 1)
    rate = model.optimizer.current_rate()
    if kernels.backend() == "native":
        from npembed import native
        logits, losses = native.review_sgd(ids, ids != 0, labels, embedding.params["embeddings"],
                                           dense.params["kernel"], dense.params["bias"], rate)
    else:
        logits, losses = review_sgd_reference(model, ids, labels, rate)
    model.optimizer.iterations += 1
    loss = float(np.mean(losses, dtype=np.float64))
    if not np.isfinite(loss):
        from npembed.model import NonFiniteLossError
        raise NonFiniteLossError(f"the loss is {loss} on this batch: per-review SGD has diverged; "
                                 "lower the learning rate")
    return loss, logits.reshape(-1, 1)
