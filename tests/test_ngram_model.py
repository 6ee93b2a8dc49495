"""The n-gram model (fastText's, by hand): the tutorial's engine over V + buckets rows.

Its math is the masked average of Embedding -> GlobalAveragePooling1D, then Dense(1), with ids
that hold each review's tokens and its hashed n-grams; these tests check its gradients against
float64 finite differences (on both kernel backends, hashed rows colliding on purpose), one lazy
Adam step against the formula, and the configuration and error paths of ``npembed train --model ngrams``.
"""
from __future__ import annotations

import numpy as np
import pytest

import npembed
from npembed.config import TrainConfig, build_model
from npembed.models import ngrams as ngram_module, tutorial as tutorial_module
from npembed.datasets.batching import EncodedSplit
from npembed.datasets.ngrams import ngram_split
from npembed.errors import UsageError
from npembed.gradcheck import check_model_gradients

V, BUCKETS = 30, 11          # few buckets: hashed n-grams collide, and share rows with each other


def ngram_batch(n=3, seed=5):
    rng = np.random.default_rng(seed)
    lengths = np.array([9, 2, 5, 1, 7, 4])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(1, 8, int(offsets[-1])).astype(np.int32)       # few ids: repeats, repeated grams
    labels = np.array([1, 0, 1, 1, 0, 0], dtype=np.int8)
    split = EncodedSplit("train", ids, offsets, labels, np.arange(6).astype(str))
    grams = ngram_split(split, n, BUCKETS, V)
    return grams.padded(np.arange(6)), labels


def ngram_model(hidden_units=0, dtype="float64"):
    return npembed.tutorial_model(V + BUCKETS, embedding_dim=4, hidden_units=hidden_units,
                                  mask_zero=True, seed=2, dtype=dtype)


@pytest.mark.parametrize("hidden_units", [0, 5])
def test_ngram_model_gradients_match_finite_differences(kernel_backend, hidden_units):
    ids, labels = ngram_batch()
    assert ids.max() >= V and np.unique(ids[ids >= V]).size < (ids >= V).sum()   # collisions present
    errors = check_model_gradients(ngram_model(hidden_units), ids, labels)
    assert max(errors.values()) < 1e-6, errors


def test_fused_and_layer_by_layer_agree_on_ngram_ids(kernel_backend):
    ids, labels = ngram_batch()
    fused, plain = ngram_model(), ngram_model()
    plain.fused = False
    loss_fused, grads_fused = fused.compute_gradients(ids, labels)
    loss_plain, grads_plain = plain.compute_gradients(ids, labels)
    assert loss_fused == pytest.approx(loss_plain, rel=1e-14)
    for a, b in zip(grads_fused, grads_plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_one_lazy_adam_step_is_the_derived_update(kernel_backend):
    """docs/gradients_appendix.md section 4 (the n-gram model): rows in the batch take Adam's
    first step, w - lr * g / (|g| + eps * sqrt(1 - beta_2)) with the bias corrections; all
    others stay."""
    ids, labels = ngram_batch()
    model = ngram_model()
    model.compile(optimizer=npembed.optimizers.Adam(learning_rate=0.01, variant="lazy"))
    before = model.get_weights()
    _, grads = model.compute_gradients(ids, labels)
    model.train_on_batch(ids, labels)
    table, grad = before[0], grads[0]
    looked_up = np.zeros(table.shape[0], bool)
    looked_up[np.unique(ids[ids != 0])] = True
    m, v = (1 - 0.9) * grad, (1 - 0.999) * grad ** 2
    beta_1, beta_2 = (np.float64(np.float32(b)) for b in (0.9, 0.999))   # Keras casts via float32
    alpha = 0.01 * np.sqrt(1 - beta_2) / (1 - beta_1)
    expected = table - m * alpha / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(model.weights[0][looked_up], expected[looked_up], rtol=1e-12)
    np.testing.assert_array_equal(model.weights[0][~looked_up], table[~looked_up])


def test_padding_does_not_dilute_the_bag():
    """The same review padded to different lengths has the same logit (the mask is implied)."""
    ids, _ = ngram_batch()
    model = ngram_model()
    longer = np.pad(ids, ((0, 0), (0, 13)))
    np.testing.assert_allclose(model(ids), model(longer), rtol=1e-14)


def test_ngram_config_defaults_and_table():
    config = TrainConfig.for_model("ngrams")
    assert config.mask and config.model_options["ngrams"] == ngram_module.OPTIONS["ngrams"] == 2
    assert config.validation_steps is None
    with pytest.raises(UsageError, match="needs --mask"):
        TrainConfig.for_model("ngrams", mask=False).validate()
    model = build_model(TrainConfig.for_model("ngrams", buckets=100, embedding_dim=4), vocab_size=8185)
    assert model.weights[0].shape == (8285, 4) and len(model.layers) == 3   # no hidden layer
    documented = build_model(TrainConfig.for_model("ngrams", buckets=100, embedding_dim=4), 8185, steps_per_epoch=700)
    optimizer = documented.optimizer                      # the validation split's choice, no decay
    assert isinstance(optimizer, npembed.optimizers.RowwiseAdagrad) and optimizer.decay_steps is None
    assert (optimizer.learning_rate, config.batch_size) == (0.1, 32)
    tutorial = TrainConfig()
    assert tutorial.model == "tutorial" and tutorial.model_options == {} and not tutorial.mask
    assert tutorial_module.table_rows(tutorial, 8185) == 8185
    assert ngram_module.table_rows(TrainConfig.for_model("ngrams", ngrams=1), 8185) == 8185    # tokens only


@pytest.mark.parametrize("options, message", [
    (dict(ngrams=2, buckets=-3), "--buckets must be an integer >= 1"),
    (dict(ngrams=7), "--ngrams must be an integer from 1"),
    (dict(ngrams=2, validation_reviews=-1), "--validation-reviews must be an integer"),
    (dict(ngrams=2, validation_reviews=25_000), "--validation-reviews must be an integer"),
    (dict(ngrams=2, buckets=2 ** 31), "fit int32"),
])
def test_bad_ngram_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig.for_model("ngrams", **options).validate()


def test_validation_reviews_zero_is_a_refit_without_early_stopping():
    config = TrainConfig.for_model("ngrams", validation_reviews=0, epochs=2)
    assert config.early_stopping == 0
    config.validate()
    with pytest.raises(UsageError, match="--early-stopping needs validation reviews"):
        TrainConfig.for_model("ngrams", validation_reviews=0, early_stopping=1).validate()


def test_refit_run_trains_on_every_train_review_and_tests_once(imdb, tmp_path):
    import json
    from npembed.training import run_splits, train
    config = TrainConfig.for_model("ngrams", buckets=50_000, epochs=1, steps_per_epoch=100, validation_reviews=0)
    train_split, validation, test = run_splits(config, imdb)
    assert (len(train_split), validation, len(test)) == (25_000, None, 25_000)
    results = train(config, tmp_path / "run", data=imdb, progress=False)
    assert results["test_reviews"] == 25_000 and 0.6 < results["test_accuracy"] < 1
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert set(history) == {"loss", "accuracy"}                 # nothing to validate on


def test_cli_bad_ngram_option_is_one_line(capsys, monkeypatch, tmp_path):
    from npembed.cli import main
    code = main(["train", "--model", "ngrams", "--buckets", "0", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--buckets" in err[0] and not (tmp_path / "run").exists()
    code = main(["train", "--ngrams", "2", "--out", str(tmp_path / "run")])       # an option of another model
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ngrams is an option of --model ngrams" in err[0]
    assert not (tmp_path / "run").exists()


def test_ngram_training_run_validates_on_held_out_train_reviews(imdb, tmp_path, capsys):
    """A short real run: trains on 25,000 - 1,000 reviews, validates on the 1,000 held out,
    evaluates the 25,000 test reviews once."""
    from npembed.training import run_splits, train
    config = TrainConfig.for_model("ngrams", buckets=50_000, epochs=1, steps_per_epoch=300, validation_reviews=1000)
    train_split, validation, test = run_splits(config, imdb)
    assert (len(train_split), len(validation), len(test)) == (24_000, 1000, 25_000)
    assert not set(validation.keys) & set(train_split.keys) and validation.ids.max() >= 8185
    results = train(config, tmp_path / "run", data=imdb, progress=False)
    assert results["test_reviews"] == 25_000 and 0.6 < results["test_accuracy"] < 1
    # `npembed evaluate` scores the run on the ids it was trained on (tokens and n-grams)
    from conftest import real_data_path
    from npembed.cli import main
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--data", real_data_path()]) in (0, None)
    printed = capsys.readouterr().out
    assert f"accuracy {results['test_accuracy']:.4f}" in printed, printed


def test_sgd_ngram_run_trains_and_its_checkpoint_keeps_the_step_count(imdb, tmp_path):
    """--optimizer sgd end to end on real reviews; the checkpoint restores SGD's step count
    (its rate's decay), the only state it has."""
    from npembed.checkpoint import load_checkpoint
    from npembed import per_review
    from npembed.optimizers import SGD
    from npembed.training import train
    config = TrainConfig.for_model("ngrams", buckets=50_000, epochs=1, steps_per_epoch=300, validation_reviews=1000,
                                    optimizer="sgd", learning_rate=1.0)
    results = train(config, tmp_path / "run", data=imdb, progress=False)
    assert 0.6 < results["test_accuracy"] < 1
    model = build_model(config, 8185, steps_per_epoch=300)
    assert isinstance(model.optimizer, SGD) and ngram_module.fit_step(config) is per_review.train_step
    assert model.optimizer.decay_steps == 300 and model.optimizer.iterations == 0
    load_checkpoint(tmp_path / "run" / "checkpoint.npz", model)
    assert model.optimizer.iterations == 300 and model.optimizer.current_rate() == 0.0


def _printed_z(text: str) -> float:
    line = next(line for line in text.splitlines() if line.strip().startswith("z = "))
    return float(line.split()[2])


def test_grads_on_an_ngram_run_feeds_the_reviews_ngrams(imdb, tmp_path, capsys):
    """Issue 22 item 1: `npembed grads` on an n-gram run differentiates the review as evaluate
    and predict see it (its subword ids and its hashed n-grams): the same z."""
    from conftest import real_data_path
    from npembed.cli import main
    from npembed.models import text_inputs
    from npembed.training import load_run, train
    config = TrainConfig.for_model("ngrams", buckets=50_000, epochs=1, steps_per_epoch=50, validation_reviews=1000)
    train(config, tmp_path / "run", data=imdb, progress=False)
    model, config, encoder = load_run(tmp_path / "run")
    prepared = ngram_module.prepare(imdb.train, config, encoder.vocab_size, imdb.cache_folder)
    with_ngrams = float(model(prepared.review(3)[None, :])[0, 0])
    without = float(model(imdb.train.review(3)[None, :])[0, 0])
    assert abs(with_ngrams - without) > 1e-3                  # the test can tell the two apart
    assert main(["grads", "--run", str(tmp_path / "run"), "--index", "3", "--no-keras",
                 "--data", real_data_path()]) in (0, None)
    assert _printed_z(capsys.readouterr().out) == pytest.approx(with_ngrams, abs=2e-6)
    text = "a slow film, but the last hour is wonderful"
    assert main(["grads", "--run", str(tmp_path / "run"), "--text", text, "--no-keras"]) in (0, None)
    expected = float(model(text_inputs(config, encoder, text))[0, 0])
    assert text_inputs(config, encoder, text).max() >= encoder.vocab_size        # n-gram rows in it
    assert _printed_z(capsys.readouterr().out) == pytest.approx(expected, abs=2e-6)


def test_a_resumed_sgd_run_with_more_epochs_is_refused(imdb, tmp_path):
    """Issue 22 item 2: SGD's rate decays to 0 over the run's planned steps; extending a run
    would mix two schedules (epoch 3 at 0.4927 where a straight run has 0.4051), so it is
    refused with what to do, and the run is left as it was."""
    from npembed.checkpoint import CheckpointError
    from npembed.training import train
    out = tmp_path / "run"
    config = TrainConfig.for_model("ngrams", buckets=50_000, optimizer="sgd", validation_reviews=0, epochs=1,
                                   steps_per_epoch=30)
    train(config, out, data=imdb, progress=False)
    before = (out / "config.json").read_text()
    with pytest.raises(CheckpointError, match="decays linearly to 0 over 30 steps, this run's over 60.*own --epochs"):
        train({"epochs": 2}, out, data=imdb, resume=True, progress=False)
    assert (out / "config.json").read_text() == before
    train({"epochs": 1}, out, data=imdb, resume=True, progress=False)      # its own length: fine
