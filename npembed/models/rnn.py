"""The "Text classification with an RNN" tutorial's model, on the same subwords8k batches:

    Embedding(8185, 64) -> Bidirectional(LSTM(64)) -> Dense(64, relu) -> Dense(1)

Inputs: each review's subword ids, zero-padded per batch, as the tutorial's model (the
``tutorial`` module's ``prepare``).  Defaults: the RNN tutorial's settings: Adam(1e-4) (Keras 2's,
the tutorial's tf.keras), batches of 64 from ``shuffle(10000)``, 10 epochs, validation on the
first 30 batches of the test split.  No mask unless ``--mask`` (the tutorial's LSTM runs over the
padding; with ``--mask`` it skips it, as ``Embedding(mask_zero=True)`` makes Keras do).
Own option: ``--lstm-units`` (64).  The layers: ``npembed/recurrent.py``; docs/rnn.md.
"""
from __future__ import annotations

from npembed import layers
from npembed.checks import check_int_option
from npembed.errors import UsageError
from npembed.losses import BinaryCrossentropy
from npembed.model import Sequential
from npembed.models import tutorial
from npembed.models.common import make_optimizer
from npembed.recurrent import LSTM, Bidirectional

NAME = "rnn"
HELP = ("the RNN tutorial's model: subword ids -> Embedding(64) -> Bidirectional(LSTM(64)) -> "
        "Dense(64, relu) -> Dense(1)")
OPTIONS = {"lstm_units": 64}
DEFAULTS = dict(embedding_dim=64, hidden_units=64, batch_size=64, shuffle_buffer=10000, learning_rate=1e-4,
                validation_steps=30, epochs=10, adam_variant="keras2", **OPTIONS)


def rnn_model(vocab_size: int = 8185, embedding_dim: int = 64, lstm_units: int = 64, hidden_units: int = 64,
              mask_zero: bool = False, seed: int | None = None, dtype="float32") -> Sequential:
    """The RNN tutorial's layers, uncompiled."""
    return Sequential([layers.Embedding(vocab_size, embedding_dim, mask_zero=mask_zero),
                       Bidirectional(LSTM(lstm_units)), layers.Dense(hidden_units, activation="relu"),
                       layers.Dense(1)], seed=seed, dtype=dtype)


def add_options(group) -> None:
    group.description = (f"{HELP}. Its defaults, the tutorial's: --embedding-dim 64 --hidden-units 64 "
                         "--batch-size 64 --learning-rate 1e-4 --epochs 10 --validation-steps 30 "
                         "(shuffle buffer 10,000); --mask skips the padding")
    group.add_argument("--lstm-units", type=int, metavar="U", help=f"units of each LSTM direction "
                       f"(default {OPTIONS['lstm_units']})")


def defaults(asked: dict) -> dict:
    return dict(DEFAULTS)


def check(config, vocab_size: int) -> None:
    check_int_option("lstm_units", config.model_options["lstm_units"], 1, 4096)
    if config.optimizer != "adam":
        raise UsageError(f"--model {config.model} trains with Adam, as the tutorial does: drop "
                         f"--optimizer {config.optimizer}")
    if not config.hidden_units:
        raise UsageError(f"--model {config.model} has its Dense(relu) layer: --hidden-units must be at least 1")


def position_bytes(config) -> int:
    """Bytes the LSTMs keep per position of a batch for backward (the memory check): two
    directions, about eight float32 arrays of U per step (gates, cell, tanh(cell), h, dh)."""
    return 2 * 8 * 4 * config.model_options["lstm_units"]


table_rows = tutorial.table_rows
prepare = tutorial.prepare
splits = tutorial.splits                  # validation on the test split, as the tutorial does


def build(config, vocab_size: int, steps_per_epoch: int | None = None, dtype="float32") -> Sequential:
    model = rnn_model(vocab_size, config.embedding_dim, config.model_options["lstm_units"], config.hidden_units,
                      mask_zero=config.mask, seed=config.seed, dtype=dtype)
    return _compiled(model, config, steps_per_epoch)


def _compiled(model: Sequential, config, steps_per_epoch) -> Sequential:
    model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                  loss=BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def fit_step(config):
    """None: one Adam step per batch, as Keras trains."""
    return None
