"""The RNN tutorial's second model: two recurrent layers and Dropout.

    Embedding(8185, 64) -> Bidirectional(LSTM(64, return_sequences=True)) -> Bidirectional(LSTM(32))
    -> Dense(64, relu) -> Dropout(0.5) -> Dense(1)

Everything else (inputs, defaults, ``--mask``, the splits) is ``rnn``'s; ``--lstm-units`` sizes the
first recurrent layer, the second has half as many.
"""
from __future__ import annotations

from npembed import layers
from npembed.model import Sequential
from npembed.models import rnn
from npembed.recurrent import LSTM, Bidirectional

NAME = "rnn-stacked"
HELP = ("the RNN tutorial's stacked model: Bidirectional(LSTM(64), sequences) -> Bidirectional(LSTM(32)) "
        "-> Dense(64, relu) -> Dropout(0.5) -> Dense(1)")
OPTIONS = rnn.OPTIONS
defaults, check = rnn.defaults, rnn.check
table_rows, prepare, splits, fit_step = rnn.table_rows, rnn.prepare, rnn.splits, rnn.fit_step


def position_bytes(config) -> int:
    """rnn's, for its first recurrent layer, plus its second's (half the units) and the
    first's output sequence (2U float32 per position)."""
    return rnn.position_bytes(config) * 3 // 2 + 2 * 4 * config.model_options["lstm_units"]


def stacked_model(vocab_size: int = 8185, embedding_dim: int = 64, lstm_units: int = 64, hidden_units: int = 64,
                  mask_zero: bool = False, seed: int | None = None, dtype="float32") -> Sequential:
    """The stacked model's layers, uncompiled."""
    return Sequential([layers.Embedding(vocab_size, embedding_dim, mask_zero=mask_zero),
                       Bidirectional(LSTM(lstm_units, return_sequences=True)),
                       Bidirectional(LSTM(max(lstm_units // 2, 1))),
                       layers.Dense(hidden_units, activation="relu"), layers.Dropout(0.5), layers.Dense(1)],
                      seed=seed, dtype=dtype)


def add_options(group) -> None:
    """Its options are rnn's (--lstm-units sizes the first recurrent layer), shown there."""
    group.description = f"{HELP}. Options and defaults: --model rnn's"


def build(config, vocab_size: int, steps_per_epoch: int | None = None, dtype="float32") -> Sequential:
    model = stacked_model(vocab_size, config.embedding_dim, config.model_options["lstm_units"],
                          config.hidden_units, mask_zero=config.mask, seed=config.seed, dtype=dtype)
    return rnn._compiled(model, config, steps_per_epoch)
