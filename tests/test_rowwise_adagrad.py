"""Row-wise Adagrad, one step per review (``optimizers.RowwiseAdagrad``, ``per_review.py``).

What could be false: the kernel could give a row held twice by one review two updates (or
add c * g**2 to its accumulator instead of (c * g)**2); it could use the updated Dense kernel
for the rows' step; an accumulator could move for a row the review does not hold; the rate
could decay at the wrong step; a checkpoint could lose the accumulators, so a resumed run
would restart every row at full step.  Each is checked against a definition: the framework's
own forward and backward (``per_review.reference_steps``), float64 finite differences of one
review's loss, and an interrupted, resumed run on real reviews.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import npembed
from npembed.gradcheck import numerical_gradient
from npembed.optimizers import RowwiseAdagrad
from npembed.per_review import reference_steps, train_step

from test_sgd import FLOAT32_STEPS, D, V, batch   # few ids: rows repeat within and across reviews; padding


def model(dtype="float64", lr=0.3, decay_steps=None, seed=2):
    m = npembed.tutorial_model(V, D, 0, mask_zero=True, seed=seed, dtype=dtype)
    m.compile(optimizer=RowwiseAdagrad(lr, decay_steps=decay_steps))
    return m


def test_native_kernel_equals_batch_one_framework_steps(native_backend):
    ids, labels = batch()
    fast, slow = model("float32"), model("float32")
    slow.optimizer.build(slow.weights)
    for _ in range(3):                                     # later steps divide by grown accumulators
        loss, logits = train_step(fast, ids, labels)
        ref_logits, ref_losses = reference_steps(slow, ids, labels.reshape(-1, 1), 0.3)
        np.testing.assert_allclose(logits[:, 0], ref_logits, **FLOAT32_STEPS)
        assert loss == pytest.approx(ref_losses.mean(), rel=1e-5)
    # float32, a few dozen operations per entry and step (see FLOAT32_STEPS in test_sgd.py)
    for a, b in zip(fast.weights + fast.optimizer.accumulators, slow.weights + slow.optimizer.accumulators):
        np.testing.assert_allclose(a, b, **FLOAT32_STEPS)
    assert fast.optimizer.iterations == 3


def test_batch_step_equals_one_review_step_at_batch_one(kernel_backend):
    """apply_gradients (a step on the batch's gradient) and the per-review step are the same
    update for a batch of one review."""
    ids, labels = batch()
    one, label = ids[1:2], labels[1:2]
    batch_model, review_model = model(), model()
    batch_model.train_step(one, label)
    train_step(review_model, one, label)
    for a, b in zip(batch_model.weights + batch_model.optimizer.accumulators,
                    review_model.weights + review_model.optimizer.accumulators):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_first_step_is_the_finite_difference_gradient_over_its_root_mean_square(kernel_backend):
    """docs/gradients_appendix.md §6: from A = 0, a held row r moves by lr * g_r / (rms(g_r) + eps)
    (its summed gradient: a row held twice moves once, by its doubled gradient), each Dense entry
    by lr * g / (|g| + eps), about lr * sign(g); nothing else moves, only the held rows' A grow."""
    ids, labels = batch()
    one, label = ids[1:2].copy(), labels[1:2]
    one[0, 2] = one[0, 0]                                        # a row held twice, beside padding
    m = model(lr=0.5)
    before = m.get_weights()
    train_step(m, one, label)
    probe = model()
    grads = [numerical_gradient(lambda: probe.loss(label, probe.forward(one)), w) for w in probe.weights]
    held = np.unique(one[one != 0])
    table_step = (before[0] - m.weights[0]) / 0.5
    rms = np.sqrt(np.mean(grads[0][held] ** 2, axis=1))
    eps = m.optimizer.epsilon
    np.testing.assert_allclose(table_step[held], grads[0][held] / (rms[:, None] + eps), rtol=1e-6)
    assert not np.any(np.delete(table_step, held, axis=0))
    np.testing.assert_allclose(m.optimizer.accumulators[0][held], rms ** 2, rtol=1e-6)
    assert not np.any(np.delete(m.optimizer.accumulators[0], held))
    for weight_before, weight_after, grad in zip(before[1:], m.weights[1:], grads[1:]):
        np.testing.assert_allclose((weight_before - weight_after) / 0.5, grad / (np.abs(grad) + eps), rtol=1e-6)


def test_rate_decays_per_batch(native_backend):
    ids, labels = batch()
    m = model("float32", lr=0.4, decay_steps=2)
    assert m.optimizer.current_rate() == 0.4
    train_step(m, ids, labels)
    assert m.optimizer.current_rate() == pytest.approx(0.2)
    train_step(m, ids, labels)
    frozen = m.get_weights()
    train_step(m, ids, labels)                                   # rate 0 now: nothing moves
    for a, b in zip(frozen, m.weights):
        np.testing.assert_array_equal(a, b)


def test_refuses_other_models_bad_ids_and_bad_options(native_backend):
    ids, labels = batch()
    hidden = npembed.tutorial_model(V, D, 3, mask_zero=True, seed=0)
    hidden.compile(optimizer=RowwiseAdagrad(0.1))
    with pytest.raises(ValueError, match="per-review RowwiseAdagrad"):
        train_step(hidden, ids, labels)
    empty = ids.copy()
    empty[2] = 0
    for dtype in ("float32", "float64"):                      # the C kernel, the NumPy one
        untouched = model(dtype)
        with pytest.raises(ValueError, match="row 2 of the batch is all padding"):
            train_step(untouched, empty, labels)
        for a, b in zip(untouched.weights, model(dtype).weights):   # reviews 0 and 1 did not move it
            np.testing.assert_array_equal(a, b)
    outside = ids.copy()
    outside[3, 0] = V
    untouched = model("float32")
    with pytest.raises(ValueError, match="out of range"):
        train_step(untouched, outside, labels)
    for a, b in zip(untouched.weights, model("float32").weights):   # checked before any review moved
        np.testing.assert_array_equal(a, b)
    for bad in (dict(learning_rate=0.0), dict(learning_rate=0.1, epsilon=0.0),
                dict(learning_rate=0.1, decay_steps=0), dict(learning_rate=0.1, epsilon=float("inf"))):
        with pytest.raises(ValueError):
            RowwiseAdagrad(**bad)
    with pytest.raises(TypeError):
        RowwiseAdagrad("0.1")


def test_options_are_checked():
    from npembed.config import TrainConfig
    from npembed.errors import UsageError
    with pytest.raises(UsageError, match="--optimizer rowwise-adagrad .* --model ngrams"):
        TrainConfig(optimizer="rowwise-adagrad").validate()
    with pytest.raises(UsageError, match="--hidden-units 0"):
        TrainConfig.for_model("ngrams", optimizer="rowwise-adagrad", hidden_units=4).validate()
    TrainConfig.for_model("ngrams", optimizer="rowwise-adagrad").validate()
    with pytest.raises(UsageError, match="'nb_rates' is not an option"):
        TrainConfig.for_model("ngrams", nb_rates=True)
    with pytest.raises(TypeError):
        RowwiseAdagrad(0.1, row_rates=np.ones(V))                  # --nb-rates left the product


def test_an_interrupted_run_resumes_to_the_same_weights_and_accumulators(imdb, tmp_path):
    """--optimizer rowwise-adagrad end to end on real reviews: a run killed mid-epoch and resumed
    from its checkpoint ends bit for bit where an uninterrupted one does, which it could not if
    the checkpoint dropped the accumulators or the step count."""
    from npembed.checkpoint import load_checkpoint, save_checkpoint, CheckpointError
    from npembed.config import TrainConfig, build_model
    from npembed.training import train
    from test_training import InterruptAt
    config = TrainConfig.for_model("ngrams", ngrams=2, buckets=50_000, epochs=2, steps_per_epoch=40,
                                    validation_reviews=500, optimizer="rowwise-adagrad", learning_rate=0.2)
    whole = train(config, tmp_path / "whole", data=imdb, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", data=imdb, progress=False, extra_callbacks=[InterruptAt(1, 15)])
    resumed = train(None, tmp_path / "cut", data=imdb, resume=True, progress=False)
    assert resumed["test_accuracy"] == whole["test_accuracy"] and 0.55 < whole["test_accuracy"] < 1
    with np.load(tmp_path / "whole" / "weights.npz") as a, np.load(tmp_path / "cut" / "weights.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    restored = build_model(config, 8185, steps_per_epoch=40)
    load_checkpoint(tmp_path / "whole" / "checkpoint.npz", restored)
    table_acc = restored.optimizer.accumulators[0]
    assert restored.optimizer.iterations == 80 and table_acc.shape == (8185 + 50_000,)
    assert 0 < np.count_nonzero(table_acc) < table_acc.size      # only the rows the reviews held
    restored.optimizer.accumulators[0][5] = -1.0
    save_checkpoint(tmp_path / "bad.npz", restored, {"epoch": 1, "iterations": 80, "history": {}})
    with pytest.raises(CheckpointError, match="accumulator is negative"):
        load_checkpoint(tmp_path / "bad.npz", build_model(config, 8185, steps_per_epoch=40))


def test_accumulators_that_do_not_fit_and_negative_ids_are_refused(native_backend):
    """The kernel reads accumulators and ids as raw memory and returns -1 / -2 as codes: an
    accumulator of another dtype or shape, or a negative id, must fail before it runs."""
    ids, labels = batch()
    m = model("float32")
    train_step(m, ids, labels)
    m.optimizer.accumulators[0] = m.optimizer.accumulators[0].astype(np.float64)
    with pytest.raises(ValueError, match="RowwiseAdagrad's state .* does not fit"):
        train_step(m, ids, labels)
    negative = ids.copy()
    for bad in (-1, -2):                                       # the kernel's own codes: refused first
        negative[0, 0] = bad
        for optimizer in (RowwiseAdagrad(0.1), npembed.optimizers.SGD(0.1)):
            fresh = npembed.tutorial_model(V, D, 0, mask_zero=True, seed=2)
            fresh.compile(optimizer=optimizer)
            with pytest.raises(ValueError, match="must be >= 0"):
                train_step(fresh, negative, labels)
    with pytest.raises(ValueError, match="float32"):
        RowwiseAdagrad(0.1, epsilon=1e-50)                       # 0 in float32: 0/0 on a zero gradient


def test_a_checkpoint_of_another_optimizer_or_without_accumulators_is_refused(tmp_path):
    from npembed.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from npembed.optimizers import Adam
    ids, labels = batch()
    progress = {"epoch": 1, "iterations": 1, "history": {}}
    adam = npembed.tutorial_model(V, D, 0, mask_zero=True, seed=2, dtype="float64")
    adam.compile(optimizer=Adam(0.01, variant="lazy"))
    adam.train_step(ids, labels)
    save_checkpoint(tmp_path / "adam.npz", adam, progress)
    sgd = npembed.tutorial_model(V, D, 0, mask_zero=True, seed=2, dtype="float64")
    sgd.compile(optimizer=npembed.optimizers.SGD(0.1))
    with pytest.raises(CheckpointError, match="state of Adam, this model trains with SGD"):
        load_checkpoint(tmp_path / "adam.npz", sgd)
    with pytest.raises(CheckpointError, match="state of Adam, this model trains with RowwiseAdagrad"):
        load_checkpoint(tmp_path / "adam.npz", model())
    adagrad = model()
    train_step(adagrad, ids, labels)
    save_checkpoint(tmp_path / "adagrad.npz", adagrad, progress)
    with pytest.raises(CheckpointError, match="state of RowwiseAdagrad, this model trains with Adam"):
        load_checkpoint(tmp_path / "adagrad.npz", adam)
    with np.load(tmp_path / "adagrad.npz") as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("a_")}
    np.savez(tmp_path / "stripped.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"lacks the optimizer arrays \['a_0', 'a_1', 'a_2'\]"):
        load_checkpoint(tmp_path / "stripped.npz", model())
    with np.load(tmp_path / "adagrad.npz") as f:
        arrays = {k: f[k] for k in f.files}
    document = json.loads(arrays["state_json"].tobytes())
    document["format"] = 1                                   # before optimizers gave their own state
    arrays["state_json"] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    np.savez(tmp_path / "format1.npz", **arrays)
    with pytest.raises(CheckpointError, match="has format 1, this npembed reads format 2"):
        load_checkpoint(tmp_path / "format1.npz", model())
    uncompiled = npembed.tutorial_model(V, D, 0, mask_zero=True, seed=2, dtype="float64")
    with pytest.raises(CheckpointError, match="state of RowwiseAdagrad too: compile the model"):
        load_checkpoint(tmp_path / "adagrad.npz", uncompiled)    # its state would be lost silently
    restored = model()
    load_checkpoint(tmp_path / "adagrad.npz", restored)
    for a, b in zip(restored.optimizer.accumulators, adagrad.optimizer.accumulators):
        np.testing.assert_array_equal(a, b)


def test_each_optimizer_gets_the_rate_its_search_chose():
    from npembed.config import TrainConfig
    from npembed.models.ngrams import RATES
    documented = TrainConfig.for_model("ngrams")
    assert documented.learning_rate == RATES["rowwise-adagrad"] == 0.1
    for optimizer, rate in (("adam", 0.01), ("sgd", 1.0)):
        config = TrainConfig.for_model("ngrams", optimizer=optimizer)
        assert config.learning_rate == rate
        config.validate()
    hidden = TrainConfig.for_model("ngrams", hidden_units=16)
    assert (hidden.optimizer, hidden.learning_rate) == ("adam", 0.01)
    hidden.validate()
    assert TrainConfig.for_model("ngrams", optimizer="adam", learning_rate=0.3).learning_rate == 0.3


def test_a_state_of_another_decay_schedule_is_refused():
    """A decaying Adagrad rate resumed under another decay_steps would mix two schedules (issue
    22 item 2, as for SGD): its state records the schedule and load_state refuses another."""
    m = model("float32", lr=0.4, decay_steps=4)
    train_step(m, *batch())
    state = m.optimizer.state()
    assert state["decay_steps"] == 4
    longer = RowwiseAdagrad(0.4, decay_steps=8)
    with pytest.raises(ValueError, match="decays linearly to 0 over 4 steps, this run's over 8"):
        longer.load_state(state, m.weights)
    assert longer.iterations == 0 and longer.accumulators == []
    same = RowwiseAdagrad(0.4, decay_steps=4)
    same.load_state(state, m.weights)
    assert same.iterations == 1
