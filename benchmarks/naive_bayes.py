"""Naive-Bayes priors for the n-gram model: tried, not chosen (they left ``npembed train``).

    python -m benchmarks.naive_bayes [--max-epochs 6]

Two ways of putting NBSVM's prior (Wang & Manning, "Baselines and Bigrams", ACL 2012) into the
n-gram model ``Embedding -> average -> Dense(1)``, each run here by ``benchmarks.ngram_search``'s
``run_one`` on the validation split (settings ``"nb_init"`` and ``"nb_rates"``); the measured
results are in docs/benchmarks.md and benchmarks/results/ngram_search.jsonl.

With binarised features (feature f present in review i or not), alpha = 1 and the training
reviews' labels y_i, the log-count ratio is::

    p = alpha + sum_{i: y_i = 1} [f in review i]        q = alpha + sum_{i: y_i = 0} [f in review i]
    r_f = log( (p_f / |p|_1) / (q_f / |q|_1) )                                        (V,)

- ``nb_initialise`` (was ``--nb-init``) starts the model as that classifier: with u = k / |k|^2
  (k the Dense kernel, so that k . u = 1) every row gets ``E[f] += s r_f u``, so that
  ``z_b = z0_b + s mean_t r_{x_t} + c``, and (s, c) are fitted by logistic regression of y on
  ``mean_t r`` over the training reviews (Newton's method on 2 unknowns).
- ``RowRatesAdagrad`` (was ``--nb-rates``): row-wise Adagrad whose row r steps ``|r_f|`` times
  as far (``E[r] -= lr_t |r_r| g_r / (sqrt(A_r) + eps)``): a row's evidence for one class
  decides how fast it learns.  Its per-review step runs in NumPy here (the native kernel has no
  per-row rates any more), so time it against nothing.

Everything is computed from the training split it is given; the validation split is held out.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from npembed.datasets.batching import EncodedSplit
from npembed.datasets.ngrams import distinct_per_review
from npembed.optimizers import RowwiseAdagrad


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


class RowRatesAdagrad(RowwiseAdagrad):
    """Row-wise Adagrad with fixed per-row rate multipliers ``row_rates`` (V,) (module docstring)."""

    def __init__(self, learning_rate: float, row_rates: np.ndarray, **options):
        super().__init__(learning_rate, **options)
        self.row_rates = np.asarray(row_rates)

    def review_steps(self, ids, mask, labels, table, kernel, bias):
        """``kernels.review_adagrad_reference``'s loop with each row's step times its rate."""
        self._built([table, kernel, bias])
        table_acc, kernel_acc, bias_acc = self.accumulators
        k, k_acc = kernel.reshape(-1), kernel_acc.reshape(-1)
        lr, eps = table.dtype.type(self.current_rate()), table.dtype.type(self.epsilon)
        rates = self.row_rates.astype(table.dtype, copy=False)
        logits, losses = np.empty(len(ids), table.dtype), np.empty(len(ids), table.dtype)
        for b in range(len(ids)):
            held = ids[b][mask[b]]
            rows, counts = np.unique(held, return_counts=True)
            h = (table[held].sum(axis=0, dtype=np.float64) / held.size).astype(table.dtype)
            z = h @ k + bias[0]
            y = labels[b, 0]
            logits[b], losses[b] = z, np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
            e = 1 / (1 + np.exp(-z)) - y
            sums = (counts.astype(table.dtype)[:, None] * e / held.size) * k
            table_acc[rows] += np.mean(np.square(sums, dtype=np.float64), axis=1).astype(table.dtype)
            table[rows] -= sums * (lr * rates[rows] / (np.sqrt(table_acc[rows]) + eps))[:, None]
            for weight, acc, grad in ((k, k_acc, e * h), (bias, bias_acc, np.array([e], table.dtype))):
                acc += grad * grad
                weight -= lr * grad / (np.sqrt(acc) + eps)
        self.iterations += 1
        return logits, losses


def main(argv=None) -> None:
    from benchmarks.ngram_search import run_one
    from npembed.datasets import load_imdb_subwords8k
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=6)
    args = parser.parse_args(argv)
    data = load_imdb_subwords8k(progress=False)
    base = {"optimizer": "rowwise-adagrad", "ngrams": 2, "buckets": 2_000_000, "dim": 16, "hidden": 0,
            "batch": 32, "decay": False}
    for settings in ({**base, "lr": 0.1, "nb_init": True}, {**base, "lr": 0.4, "nb_rates": True}):
        result = run_one(data, settings, args.max_epochs)
        print(json.dumps({key: result[key] for key in ("nb_init", "nb_rates", "lr", "best_epoch",
                                                       "val_accuracy", "val_loss") if key in result}))


if __name__ == "__main__":
    main()
