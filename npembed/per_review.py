"""One optimizer step per review, as fastText trains: a choice of the training loop.

``model.fit(batches, step=per_review.train_step)`` (the n-gram model's module chooses it for
``--optimizer sgd`` and ``rowwise-adagrad``) trains a batch of B reviews as B steps in order
instead of one step on the batch's mean gradient.  fastText (``src/fasttext.cc``,
``FastText::supervised``; ``src/model.cc``, ``Model::update``) takes one step per line: average
the line's input rows, score, and move the output layer and every input row the line looked up,
before it reads the next line.  The model must be ``Embedding(V, D, mask_zero=True) ->
GlobalAveragePooling1D -> Dense(1)`` with ``BinaryCrossentropy(from_logits=True)``; its
gradients for one review are in ``kernels.py`` (section "one step per review").

All B steps are at the rate ``optimizer.current_rate()`` of the batch, and count as one step
of the optimizer (its rate decays per batch).  :func:`reference_steps` is the definition,
through the layers' own forward and backward and the optimizer's own ``update``; the fast step
is the optimizer's ``review_steps`` (``kernels.review_sgd`` / ``review_adagrad``, native or
NumPy), held to it by the tests.  Every review of the batch is checked before any weight
changes; a non-finite loss can only be seen after the batch (the weights change as it goes).
"""
from __future__ import annotations

import numpy as np

from npembed.checks import check_labels, check_no_empty_rows, check_token_ids
from npembed.errors import NonFiniteLossError
from npembed.layers import Dense, PooledEmbedding
from npembed.losses import BinaryCrossentropy


def check_supported(model) -> None:
    """Raise ValueError unless ``model`` is Embedding(mask_zero) -> average -> Dense(1, linear)
    with ``BinaryCrossentropy(from_logits=True)``, fused, and its optimizer has a per-review step."""
    steps = model.steps
    ok = (len(steps) == 2 and isinstance(steps[0], PooledEmbedding) and steps[0].embedding.mask_zero
          and isinstance(steps[1], Dense) and steps[1].units == 1 and steps[1].activation is None
          and isinstance(model.loss, BinaryCrossentropy))
    if not ok:
        raise ValueError(f"per-review {type(model.optimizer).__name__} (fastText's step) needs "
                         "Embedding(mask_zero=True) -> GlobalAveragePooling1D -> Dense(1) with "
                         "BinaryCrossentropy(from_logits=True), fused; this model runs "
                         f"{[type(s).__name__ for s in steps]}")
    if not hasattr(model.optimizer, "review_steps"):
        raise ValueError(f"{type(model.optimizer).__name__} takes batch steps only; one step per review "
                         "needs optimizers.SGD or optimizers.RowwiseAdagrad")


def checked_batch(model, ids, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (B, L), mask (B, L), labels (B, 1) in the model's dtype), every review checked."""
    if model.optimizer is None:
        raise RuntimeError("call model.compile(...) before training")
    check_supported(model)
    ids = check_token_ids(ids, model.steps[0].embedding.input_dim)
    labels = check_labels(labels, ids.shape[0]).astype(model.dtype).reshape(-1, 1)
    mask = ids != 0
    if not mask.any(axis=1).all():                   # (the cheap test first: it runs every batch)
        check_no_empty_rows(mask.sum(axis=1))       # names the first empty review
    return ids, mask, labels                        # (the optimizer checks its state: review_steps)


def reference_steps(model, ids, labels, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """B framework steps at batch 1, in order: review b's forward and backward through the
    model's layers, then ``model.optimizer.update(its gradients, weights, rate)``.  Returns
    (logits (B,), losses (B,)) of each review before its own step.  The definition."""
    logits, losses = np.empty(len(ids), model.dtype), np.empty(len(ids), model.dtype)
    for b in range(len(ids)):
        one_ids, one_label = ids[b:b + 1], labels[b:b + 1]
        out = model.forward(one_ids)
        logits[b], losses[b] = out[0, 0], model.loss(one_label, out)
        model.backward(model.loss.gradient(one_label, out))
        model.optimizer.update(model.gradients(), model.weights, rate)
    return logits, losses


def train_step(model, ids, labels) -> tuple[float, np.ndarray]:
    """One batch of per-review steps of ``model.optimizer``: (mean loss of the reviews before
    their steps, logits (B, 1)); counts one optimizer step."""
    ids, mask, labels = checked_batch(model, ids, labels)
    embedding, dense = model.steps
    logits, losses = model.optimizer.review_steps(ids, mask, labels, embedding.params["embeddings"],
                                                  dense.params["kernel"], dense.params["bias"])
    loss = float(np.mean(losses, dtype=np.float64))
    if not np.isfinite(loss):
        raise NonFiniteLossError(f"the loss is {loss} on this batch: per-review "
                                 f"{type(model.optimizer).__name__} has diverged; lower the learning rate")
    return loss, logits.reshape(-1, 1)
