"""Naive-Bayes initialisation of the n-gram model (Wang & Manning 2012's log-count ratio).

NBSVM (Wang & Manning, "Baselines and Bigrams", ACL 2012) scores a review by its features'
log-count ratios.  With binarised features (feature f present in review i or not), alpha = 1
and the training reviews' labels y_i::

    p = alpha + sum_{i: y_i = 1} [f in review i]        q = alpha + sum_{i: y_i = 0} [f in review i]
    r_f = log( (p_f / |p|_1) / (q_f / |q|_1) )                                        (V,)

``nb_initialise`` starts the model ``Embedding -> average -> Dense(1)`` as that classifier
before training: with u = k / |k|^2 (k the Dense kernel, so that k . u = 1) every row gets

    E[f] += s r_f u        so that        z_b = k . mean_t E[x_t] + c = z0_b + s mean_t r_{x_t} + c

and (s, c) are fitted by logistic regression of y on ``mean_t r`` over the training reviews
(Newton's method, a 2-parameter problem), the other 15 directions keeping their random start.
Everything is computed from the training split it is given; the validation split of the
n-gram runs is held out of it.  Only the starting weights change: the model, its forward and
backward, and evaluation are the same as without it.
"""
from __future__ import annotations

import numpy as np

from npembed.datasets.batching import EncodedSplit
from npembed.datasets.ngrams import distinct_per_review


def log_count_ratio(split: EncodedSplit, num_rows: int, alpha: float = 1.0) -> np.ndarray:
    """r (num_rows,) float64 of the module docstring, from the binarised features of ``split``."""
    distinct = distinct_per_review(split)                          # each (review, row) once
    rows = distinct.ids
    positive = np.repeat(distinct.labels.astype(bool), distinct.lengths)
    p = alpha + np.bincount(rows[positive], minlength=num_rows)
    q = alpha + np.bincount(rows[~positive], minlength=num_rows)
    return np.log(p / p.sum()) - np.log(q / q.sum())


def review_means(split: EncodedSplit, values: np.ndarray) -> np.ndarray:
    """(N,) mean of ``values[id]`` over each review's positions (duplicates counted, as pooling does)."""
    sums = np.add.reduceat(values[split.ids], split.offsets[:-1])
    return sums / split.lengths


def fit_scale(x: np.ndarray, y: np.ndarray, steps: int = 25) -> tuple[float, float]:
    """(s, c) minimising the mean of log(1 + exp(-(2y-1)(s x + c))): Newton's method on 2 unknowns."""
    s, c = 0.0, 0.0
    design = np.stack([x, np.ones_like(x)], axis=1)              # (N, 2)
    for _ in range(steps):
        prob = 1 / (1 + np.exp(-(s * x + c)))
        gradient = design.T @ (prob - y) / len(x)
        hessian = (design * (prob * (1 - prob))[:, None]).T @ design / len(x) + 1e-9 * np.eye(2)
        s, c = np.array([s, c]) - np.linalg.solve(hessian, gradient)
    return float(s), float(c)


def nb_initialise(model, split: EncodedSplit, alpha: float = 1.0) -> tuple[float, float]:
    """Add ``s r_f u`` to every row of the model's embedding and set its bias to c (module
    docstring); returns (s, c).  ``model``: Embedding -> average -> Dense(1)."""
    table = model.weights[0]
    kernel = model.layers[-1].params["kernel"][:, 0].astype(np.float64)          # (D,)
    r = log_count_ratio(split, table.shape[0], alpha)
    s, c = fit_scale(review_means(split, r), split.labels.astype(np.float64))
    u = kernel / (kernel @ kernel)
    for start in range(0, table.shape[0], 1 << 18):                               # in blocks: no (V, D) float64
        block = slice(start, start + (1 << 18))
        table[block] += (s * r[block, None] * u).astype(table.dtype)
    model.layers[-1].params["bias"][...] = c
    return s, c
