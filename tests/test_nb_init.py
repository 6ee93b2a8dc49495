"""Naive-Bayes initialisation (``nb_init.py``, docs/gradients.md section 10) and the early-
stopping copy of the best weights (kept in place, never two copies of the table)."""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed.datasets.batching import EncodedSplit
from npembed.nb_init import fit_scale, log_count_ratio, nb_initialise, review_means


def tiny_split():
    # review 0 (+): 1 1 2   review 1 (+): 2 3   review 2 (-): 3 4 4
    ids = np.array([1, 1, 2, 2, 3, 3, 4, 4], dtype=np.int32)
    offsets = np.array([0, 3, 5, 8], dtype=np.int64)
    return EncodedSplit("train", ids, offsets, np.array([1, 1, 0], dtype=np.int8), np.array(["a", "b", "c"]))


def test_log_count_ratio_by_hand():
    r = log_count_ratio(tiny_split(), num_rows=6, alpha=1.0)
    p = 1 + np.array([0, 1, 2, 1, 0, 0])      # row 1 twice in review 0 counts once (binarised)
    q = 1 + np.array([0, 0, 0, 1, 1, 0])
    np.testing.assert_allclose(r, np.log(p / p.sum()) - np.log(q / q.sum()), rtol=1e-15)
    assert r[2] > 0 > r[4] and r[0] == pytest.approx(r[5])


def test_fit_scale_zeroes_the_logistic_gradient():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = (x + rng.normal(size=400) > 0.3).astype(float)
    s, c = fit_scale(x, y)
    prob = 1 / (1 + np.exp(-(s * x + c)))
    assert s > 0 and abs(np.mean(prob - y)) < 1e-10 and abs(np.mean((prob - y) * x)) < 1e-10


def test_nb_initialise_adds_the_scaled_mean_ratio_to_every_logit():
    split = tiny_split()
    model = npembed.tutorial_model(6, 4, 0, mask_zero=True, seed=3, dtype="float64")
    ids = split.padded(np.arange(3))
    before = model.forward(ids)[:, 0]
    s, c = nb_initialise(model, split)
    r = log_count_ratio(split, 6)
    np.testing.assert_allclose(model.forward(ids)[:, 0], before + s * review_means(split, r) + c, rtol=1e-12)


def test_early_stopping_keeps_the_best_epoch_in_its_own_arrays():
    from npembed.training import EarlyStopping
    model = npembed.tutorial_model(6, 4, 0, mask_zero=True, seed=3)
    early = EarlyStopping(patience=2)
    early.model = model
    snapshots = []
    for epoch, val_loss in enumerate([0.5, 0.4, 0.45, 0.3]):
        for w in model.weights:
            w += 1.0                                          # training moves the weights
        snapshots.append(model.get_weights())
        early.on_epoch_end(epoch, {"val_loss": val_loss})
        best = {0: 0, 1: 1, 2: 1, 3: 3}[epoch]
        for kept, expected, live in zip(early.best_weights, snapshots[best], model.weights):
            np.testing.assert_array_equal(kept, expected)
            assert not np.shares_memory(kept, live)
    assert early.best_epoch == 3 and not model.stop_training
