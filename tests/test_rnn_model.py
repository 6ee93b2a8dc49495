"""``--model rnn`` and ``--model rnn-stacked``: the tutorial's settings, and a few Adam steps on
real batches through the model module (the layers' own tests: tests/test_recurrent.py)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from npembed.config import TrainConfig, build_model
from npembed.errors import UsageError
from npembed.layers import Dropout
from npembed.recurrent import Bidirectional


def test_rnn_defaults_are_the_tutorials():
    config = TrainConfig.for_model("rnn")
    assert (config.embedding_dim, config.hidden_units, config.batch_size, config.shuffle_buffer) == (64, 64, 64, 10000)
    assert (config.learning_rate, config.validation_steps, config.epochs, config.mask) == (1e-4, 30, 10, False)
    model = build_model(config, 8185)
    assert [type(layer).__name__ for layer in model.layers] == ["Embedding", "Bidirectional", "Dense", "Dense"]
    assert model.count_params() == 523_840 + 66_048 + 8_256 + 65      # the tutorial's summary
    with pytest.raises(UsageError, match="--lstm-units"):
        TrainConfig.for_model("rnn", lstm_units=0).validate()


@pytest.mark.parametrize("name", ["rnn", "rnn-stacked"])
@pytest.mark.parametrize("mask", [False, True])
def test_a_few_steps_on_real_batches_lower_the_loss(imdb, name, mask):
    """Narrowed (--embedding-dim 16 --lstm-units 8), 12 Adam(3e-3) steps on the same two short
    real batches: the loss falls; the stacked model's Dropout is on while training only."""
    config = TrainConfig.for_model(name, mask=mask, embedding_dim=16, lstm_units=8, hidden_units=8,
                                   learning_rate=3e-3)
    model = build_model(config, imdb.encoder.vocab_size)
    assert isinstance(model.layers[1], Bidirectional)
    rows = np.nonzero(imdb.train.lengths < 50)[0]
    batches = [(imdb.train.padded(rows[i:i + 16]), imdb.train.labels[rows[i:i + 16]]) for i in (0, 16)]
    losses = [model.train_on_batch(*batches[step % 2]) for step in range(12)]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    ids = batches[0][0]
    np.testing.assert_array_equal(model.predict([batches[0]]), model.predict([batches[0]]))   # no dropout
    if name == "rnn-stacked":
        assert any(isinstance(layer, Dropout) for layer in model.layers)
        assert not np.array_equal(model.forward(ids, training=True), model.forward(ids, training=True))


# ---------------------------------------------------------------- the commands on an rnn run (issue 22's pass)
@pytest.fixture(scope="module")
def rnn_run(imdb, tmp_path_factory):
    """A tiny masked rnn run (2 steps; the masked final evaluation takes seconds)."""
    from npembed.training import train
    out = tmp_path_factory.mktemp("rnn") / "run"
    config = TrainConfig.for_model("rnn", mask=True, embedding_dim=8, lstm_units=4, hidden_units=4, epochs=1,
                                   steps_per_epoch=2, validation_steps=1)
    train(config, out, data=imdb, progress=False)
    return out


def test_grads_on_an_rnn_run_says_what_it_leaves_out_and_checks_the_rest(rnn_run, capsys):
    """Was: AttributeError (the average-pooling chain read ``row_gradient``), then TypeError (no
    Keras twin for Bidirectional).  Now both are one line each, and the finite differences run."""
    from npembed import cli
    assert cli.main(["grads", "--run", str(rnn_run), "--text", "a bad film"]) == 0
    out = capsys.readouterr().out
    assert "no chain printed" in out and "no Keras comparison: the Keras twin has no Bidirectional" in out
    errors = [float(e) for e in re.findall(r"rel_error (\S+)", out)]
    assert len(errors) == 11 and max(errors) < 1e-4, out


@pytest.mark.parametrize("pad", ["99999999999", "20001", "0", "-3"])
def test_predict_pad_is_bounded(rnn_run, capsys, pad):
    """Was: ``--pad 99999999999`` tried to allocate 745 GiB (numpy's _ArrayMemoryError traceback)."""
    from npembed import cli
    with pytest.raises(SystemExit) as stop:
        cli.main(["predict", "--run", str(rnn_run), "--pad", pad, "good"])
    assert stop.value.code == 2
    assert "argument --pad: must be from 1 to 20,000" in capsys.readouterr().err


@pytest.mark.parametrize("tamper", ["no layer_state", "empty dropout state"])
def test_a_checkpoint_without_the_dropout_draw_count_is_refused(tmp_path, tamper):
    """Was: accepted, the Dropout restarting its draws at 0 (a resume that silently differs from
    the uninterrupted run).  The draw count is part of format 2; without it the file is damaged."""
    import json

    from npembed.checkpoint import CheckpointError, load_checkpoint, read_npz, save_checkpoint
    config = TrainConfig.for_model("rnn-stacked", embedding_dim=4, lstm_units=2, hidden_units=2)
    model = build_model(config, 20)
    model.train_on_batch(np.array([[1, 2, 3], [4, 5, 0]]), np.array([1, 0]))
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, model, {"epoch": 1, "history": {"loss": [0.7]}})
    arrays = read_npz(path)
    document = json.loads(arrays["state_json"].tobytes())
    assert document["layer_state"] == {"dropout": {"draws": 1}}
    document["layer_state"] = {} if tamper == "no layer_state" else {"dropout": {}}
    arrays["state_json"] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    fresh = build_model(config, 20)
    with pytest.raises(CheckpointError, match="dropout"):
        load_checkpoint(path, fresh)
    assert next(layer for layer in fresh.layers if isinstance(layer, Dropout)).draws == 0


def test_lstm_refuses_flags_that_are_not_bools():
    """Was: LSTM(4, return_sequences="no") kept bool("no") = True and returned sequences."""
    from npembed.recurrent import LSTM
    for flags in ({"return_sequences": "no"}, {"go_backwards": 1}, {"return_sequences": None}):
        with pytest.raises(TypeError, match="must be True or False"):
            LSTM(4, **flags)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("sequences", [False, True])
def test_lstm_backward_out_of_order_or_misshapen_is_a_message(fast, sequences):
    """Was: KeyError 'mask' before any forward, and a (1, U) dout for a batch of 2 broadcast over
    the batch without a word (the fast path) or a NumPy error (the loop)."""
    from npembed.recurrent import LSTM
    layer = Bidirectional(LSTM(3, return_sequences=sequences))
    layer.fast = fast
    with pytest.raises(RuntimeError, match="needs a forward"):
        layer.backward(np.zeros((2, 6), np.float32))
    layer.build(5, np.random.default_rng(0), np.float32)
    out = layer.forward(np.ones((2, 4, 5), np.float32), np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool))
    with pytest.raises(ValueError, match=r"takes dout of shape \(2, "):
        layer.backward(np.ones((1, *out.shape[1:]), np.float32))
    assert layer.backward(np.ones(out.shape, np.float32)).shape == (2, 4, 5)


@pytest.mark.parametrize("name", ["rnn", "tutorial"])
def test_model_backward_before_forward_or_misshapen_is_a_message(name):
    """Was: KeyError 'x' (Dense's cache) before any forward; a (1, 1) dlogits after a batch of
    2 reached the layers (a NumPy matmul error, and with an LSTM a silent broadcast)."""
    options = {"lstm_units": 2} if name == "rnn" else {}
    model = build_model(TrainConfig.for_model(name, embedding_dim=4, hidden_units=3, **options), 30)
    with pytest.raises(RuntimeError, match="needs a forward"):
        model.backward(np.zeros((2, 1), np.float32))
    model.forward(np.array([[1, 2], [3, 0]]))
    with pytest.raises(ValueError, match=r"shaped like the last forward's output, \(2, 1\)"):
        model.backward(np.zeros((1, 1), np.float32))
    model.backward(np.zeros((2, 1), np.float32))


def test_the_memory_check_counts_the_lstm_cache(monkeypatch, rnn_run, capsys):
    """Was: the check counted one embedding pass per position only, so `evaluate --batch-size
    100000` on an rnn run (no check at all there) was killed by the OOM killer at 23 GB."""
    from npembed import cli, config as config_module
    monkeypatch.setattr(config_module, "_physical_memory", lambda: 16 << 30)
    TrainConfig.for_model("tutorial", batch_size=1500).validate()            # about 1.6 GiB
    with pytest.raises(UsageError, match="--batch-size 1500 need about"):
        TrainConfig.for_model("rnn", batch_size=1500).validate()             # about 24 GiB
    assert cli.main(["evaluate", "--run", str(rnn_run), "--batch-size", "100000"]) == 2
    assert "--batch-size 100000 need about" in capsys.readouterr().err
