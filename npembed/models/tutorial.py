"""The tutorial's model: ``Embedding(8185, 16) -> GlobalAveragePooling1D -> Dense(16, relu) -> Dense(1)``.

Inputs: each review's subword ids, zero-padded per batch (``datasets.EncodedSplit`` as it is).
Defaults: ``TrainConfig``'s own, the tutorial's settings (keras2 Adam, lr 0.001, batch 10, 10
epochs, validation on the first 20 batches of the test split, as the tutorial does).  No options
of its own; its optimizer is Adam (``--adam`` picks the variant).
"""
from __future__ import annotations

from npembed import layers
from npembed.errors import UsageError
from npembed.losses import BinaryCrossentropy
from npembed.model import Sequential
from npembed.models.common import make_optimizer

NAME = "tutorial"
HELP = "the tutorial's model (the default): subword ids -> Embedding -> average -> Dense(16, relu) -> Dense(1)"
OPTIONS: dict = {}


def tutorial_model(vocab_size: int = 8185, embedding_dim: int = 16, hidden_units: int = 16,
                   mask_zero: bool = False, seed: int | None = None, dtype="float32") -> Sequential:
    """The tutorial's layers, uncompiled; ``hidden_units=0`` drops the Dense(16, relu) layer."""
    stack = [layers.Embedding(vocab_size, embedding_dim, mask_zero=mask_zero),
             layers.GlobalAveragePooling1D()]
    if hidden_units:
        stack.append(layers.Dense(hidden_units, activation="relu"))
    stack.append(layers.Dense(1))
    return Sequential(stack, seed=seed, dtype=dtype)


def add_options(group) -> None:
    """None of its own."""


def defaults(asked: dict) -> dict:
    return {}


def check(config, vocab_size: int) -> None:
    if config.optimizer != "adam":
        raise UsageError(f"--optimizer {config.optimizer} (one step per review, as fastText trains) "
                         "trains the n-gram model without a hidden layer: give --model ngrams and "
                         "--hidden-units 0")


def table_rows(config, vocab_size: int) -> int:
    return vocab_size


def prepare(split, config, vocab_size: int, cache_folder=None):
    """The split as it is: its subword ids are the inputs."""
    return split


def splits(config, dataset, progress: bool = False):
    """(train, test, test): the tutorial validates on the test split."""
    return dataset.train, dataset.test, dataset.test


def build(config, vocab_size: int, steps_per_epoch: int | None = None, dtype="float32") -> Sequential:
    model = tutorial_model(vocab_size, config.embedding_dim, config.hidden_units, mask_zero=config.mask,
                           seed=config.seed, dtype=dtype)
    model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                  loss=BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def fit_step(config):
    """None: one optimizer step per batch (``Sequential.train_step``), as Keras trains."""
    return None
