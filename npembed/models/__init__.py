"""Models: one module per model, chosen with ``npembed train --model NAME``.

    MODELS = {"tutorial": tutorial, "ngrams": ngrams}        (adding a model = adding a module)

A model module owns everything that makes its model different from another: its layers, the
inputs its layers take (plain subword ids; ids plus hashed n-grams; ...), its defaults and its
own command-line options.  The training loop, the run folder, checkpoints and the CLI ask it and
never branch on a model's name.  A model module defines:

``NAME``
    str, the ``--model`` value.
``HELP``
    str, one line: what the model is (the title of its options in ``npembed train --help``).
``OPTIONS``
    dict, its own options and their defaults (``{}`` for none); a run keeps their values in
    ``TrainConfig.model_options``.  Every other option is common (``config.COMMON``).
``add_options(group)``
    its own options on an argparse group, each with ``dest`` = its name in OPTIONS and
    ``default=None`` (None means "not given", so that ``--resume`` can tell what was asked).
``defaults(asked) -> dict``
    the values, common options included, this model uses for what ``asked`` (a dict of the
    options given) leaves out; ``{}`` keeps ``TrainConfig``'s own, the tutorial's.
``check(config, vocab_size)``
    ``errors.UsageError`` (naming the option as the CLI spells it) for an option value this
    model cannot take.
``table_rows(config, vocab_size) -> int``
    rows of its embedding table (the memory check uses it before anything is built).
``position_bytes(config) -> int`` (optional)
    bytes its layers keep per position of a batch beyond one embedding pass (an LSTM's
    per-step cache): the memory check adds them.
``prepare(split, config, vocab_size, cache_folder=None) -> EncodedSplit``
    one split (``datasets.EncodedSplit``) as the model's inputs: every command that feeds the
    model (train, evaluate, predict, grads) goes through it, so that they all see the same ids.
``splits(config, dataset, progress=False) -> (train, validation or None, test)``
    the prepared splits of a run.
``build(config, vocab_size, steps_per_epoch=None, dtype="float32") -> Sequential``
    the model, compiled with ``models.common.make_optimizer(config, steps_per_epoch)`` and its
    loss (any object with a value and a gradient: ``loop.compile``).
``fit_step(config) -> callable or None``
    the ``step`` that ``Sequential.fit`` takes (None: ``model.train_step``, one optimizer step
    per batch; ``per_review.train_step``: fastText's one step per review).

Adding a model is adding a module with these names and its line in ``MODELS`` below: the CLI
shows its options as a group of ``npembed train --help``, ``TrainConfig`` keeps and checks them,
``config.json`` records them under ``model_options``, and every command asks the module.
"""
from __future__ import annotations

from types import ModuleType

import numpy as np

from npembed.datasets.batching import EncodedSplit
from npembed.errors import UsageError
from npembed.models import ngrams, rnn, rnn_stacked, tutorial

MODELS: dict[str, ModuleType] = {module.NAME: module for module in (tutorial, ngrams, rnn, rnn_stacked)}


def model_module(name: str) -> ModuleType:
    """The module of model ``name``, or UsageError listing the models."""
    if not isinstance(name, str) or name not in MODELS:
        raise UsageError(f"--model must be one of {', '.join(MODELS)}, got {name!r}")
    return MODELS[name]


def owner_of(option: str) -> str | None:
    """The name of the model whose own option ``option`` is, or None."""
    return next((name for name, module in MODELS.items() if option in module.OPTIONS), None)


def text_inputs(config, encoder, text: str, label: int = 0) -> np.ndarray:
    """One review text as the (1, L) ids the model of ``config`` takes (its module's ``prepare``
    of a one-review split): what predict and grads feed it, the same as evaluate and train."""
    ids = np.asarray(encoder.encode(text), dtype=np.int32)
    one = EncodedSplit("text", ids, np.array([0, ids.size], dtype=np.int64), np.array([label], dtype=np.int8),
                       np.array(["text"]))
    prepared = model_module(config.model).prepare(one, config, encoder.vocab_size)
    return prepared.padded(np.arange(1))
