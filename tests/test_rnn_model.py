"""``--model rnn`` and ``--model rnn-stacked``: the tutorial's settings, and a few Adam steps on
real batches through the model module (the layers' own tests: tests/test_recurrent.py)."""
from __future__ import annotations

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
