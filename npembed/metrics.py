"""Accuracy on logits, and the tutorial's own 'accuracy' quirk under its own name.

The tutorial's model ends in ``Dense(1)`` with no activation, so it outputs logits.  Keras turns
``metrics=['accuracy']`` with a one-unit output into ``BinaryAccuracy(threshold=0.5)``, which then
compares *logits* with 0.5: a review counts as positive only when ``p > sigmoid(0.5) = 0.62``.
npembed's ``'accuracy'`` is the correct one, ``logit > 0`` (``p > 0.5``); the Keras number is
available as ``'tutorial_accuracy'`` for comparing with the tutorial's printed figures.
"""
from __future__ import annotations

import numpy as np


class BinaryAccuracy:
    """Fraction of examples with ``(logit > threshold) == label``, accumulated over batches."""

    def __init__(self, threshold: float = 0.0, name: str = "accuracy"):
        self.threshold = float(threshold)
        self.name = name
        self.reset_state()

    def reset_state(self) -> None:
        self.correct = 0
        self.count = 0

    def update_state(self, y_true: np.ndarray, logits: np.ndarray) -> None:
        predicted = logits.reshape(-1) > self.threshold
        self.correct += int(np.count_nonzero(predicted == np.asarray(y_true).reshape(-1).astype(bool)))
        self.count += predicted.size

    def result(self) -> float:
        return self.correct / self.count if self.count else 0.0


def get(identifier) -> BinaryAccuracy:
    """Turn ``'accuracy'``, ``'tutorial_accuracy'`` or a metric object into a metric object."""
    if isinstance(identifier, BinaryAccuracy):
        return identifier
    if identifier in ("accuracy", "acc", "binary_accuracy"):
        return BinaryAccuracy(threshold=0.0, name="accuracy")
    if identifier == "tutorial_accuracy":
        return BinaryAccuracy(threshold=0.5, name="tutorial_accuracy")
    raise ValueError(f"unknown metric {identifier!r}: use 'accuracy' (logit > 0) or "
                     "'tutorial_accuracy' (Keras's threshold 0.5 applied to logits)")
