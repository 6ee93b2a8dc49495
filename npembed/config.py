"""A training run's options (the tutorial's settings by default), checked before anything runs.

Every option is checked here, before a file is written or the data is loaded: a rejected option
must leave nothing behind.  ``TrainConfig.from_json`` reads a ``config.json`` back with the same
checks, so that a damaged one is reported as such.
"""
from __future__ import annotations

import dataclasses
import math
import os

import npembed
from npembed.errors import UsageError

MAX_SEED = 2 ** 63 - 2           # the validation stream uses seed + 1
LONGEST_REVIEW = 4000            # subwords; IMDB's longest is 3,944 (a bound for the memory estimate)


# The per-epoch training loss the tutorial printed (TF 2.1, tf.keras, 2,500 steps of
# padded_batch(10) per epoch): tensorflow/docs, site/en/tutorials/text/word_embeddings.ipynb as
# published with TF 2.1.  `make train` (keras2 Adam) is held within 0.03 of it in every epoch.
TUTORIAL_LOSS = (0.5060, 0.2816, 0.2261, 0.1937, 0.1718, 0.1552, 0.1411, 0.1291, 0.1186, 0.1077)


@dataclasses.dataclass
class TrainConfig:
    """The tutorial's settings by default."""

    epochs: int = 10
    batch_size: int = 10
    embedding_dim: int = 16
    hidden_units: int = 16
    mask: bool = False
    learning_rate: float = 0.001
    seed: int = 0
    validation_steps: int | None = 20
    shuffle_buffer: int = 1000
    early_stopping: int = 0          # patience in epochs on val_loss; 0 = off
    steps_per_epoch: int | None = None
    adam_variant: str = "keras2"     # the tutorial's tf.keras Adam; see optimizers.py
    optimizer: str = "adam"          # or, with ngrams, one step per review: "sgd" (fastText's, its
                                     # rate decaying linearly to 0) or "rowwise-adagrad"
    nb_init: bool = False            # with ngrams: start as the naive-Bayes classifier (nb_init.py)
    nb_rates: bool = False           # with rowwise-adagrad: each row's rate times |its NB log-count ratio|
    # The n-gram model (fastText's, ``--ngrams N``); 0 is the tutorial's model, and then the
    # two options below are unused.  See NGRAM_DEFAULTS and datasets/ngrams.py.
    ngrams: int = 0                  # tokens plus their hashed 2..N-grams
    buckets: int = 2_000_000         # table rows for the hashed n-grams, after the vocabulary
    validation_reviews: int = 2500   # held out of the train reviews (seed 0) to validate on; 0:
                                     # train on all of them, no validation (a refit for chosen --epochs)

    def __post_init__(self):
        if self.ngrams:
            self.mask = True         # implied: padding must not dilute the bag's average

    @classmethod
    def for_ngrams(cls, **options) -> "TrainConfig":
        """The n-gram model's configuration: NGRAM_DEFAULTS, then ``options``.  The learning rate,
        when not given, is the one chosen for the optimizer and --nb-rates (NGRAM_RATES); a
        hidden layer without an optimizer given trains with Adam.  With
        ``validation_reviews=0`` (train on every train review, for a number of epochs chosen
        before) early stopping is off unless asked for, which validate() then refuses."""
        defaults = dict(NGRAM_DEFAULTS)
        if options.get("validation_reviews") == 0:
            defaults["early_stopping"] = 0
        if options.get("hidden_units") and "optimizer" not in options:
            defaults["optimizer"] = "adam"           # the per-review optimizers have no hidden layer
        chosen = (options.get("optimizer", defaults["optimizer"]), options.get("nb_rates", False))
        defaults["learning_rate"] = NGRAM_RATES.get(chosen, defaults["learning_rate"])
        return cls(**{**defaults, **options})

    def table_rows(self, vocab_size: int) -> int:
        """The embedding's rows: the vocabulary, plus the n-gram buckets when ngrams > 1."""
        return vocab_size + (self.buckets if self.ngrams > 1 else 0)

    def validate(self, vocab_size: int = 8185) -> None:
        """Raise UsageError, naming the option as the CLI spells it, for any bad value."""
        for name, low in [("epochs", 1), ("batch_size", 1), ("embedding_dim", 1), ("hidden_units", 0),
                          ("shuffle_buffer", 0), ("early_stopping", 0), ("seed", 0)]:
            _check_int(name, getattr(self, name), low, MAX_SEED if name == "seed" else None)
        for name in ("validation_steps", "steps_per_epoch"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and rate > 0):
            raise UsageError(f"--learning-rate must be a finite number > 0, got {rate!r}")
        try:
            npembed.optimizers.check_learning_rate(rate)
        except ValueError as err:
            raise UsageError(f"--learning-rate: {err}") from None
        if not isinstance(self.mask, bool):
            raise UsageError(f"--mask must be true or false, got {self.mask!r}")
        if self.ngrams:
            from npembed.datasets.ngrams import check_ngram_options
            check_ngram_options(self.ngrams, self.buckets, vocab_size)
            _check_int("validation_reviews", self.validation_reviews, 0, 24_999)
            if self.validation_reviews == 0 and self.early_stopping:
                raise UsageError("--early-stopping needs validation reviews to watch: with "
                                 "--validation-reviews 0 give --epochs (the count a run with "
                                 "validation chose) and no --early-stopping")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.nb_init and not (self.ngrams and self.hidden_units == 0):
            raise UsageError("--nb-init starts the n-gram model without a hidden layer: give "
                             "--ngrams N and --hidden-units 0")
        if self.nb_rates not in (True, False):
            raise UsageError(f"--nb-rates must be true or false, got {self.nb_rates!r}")
        if self.nb_rates and not (self.ngrams and self.optimizer == "rowwise-adagrad"):
            raise UsageError("--nb-rates sets row-wise Adagrad's per-row rates: give --ngrams N "
                             "and --optimizer rowwise-adagrad")
        if self.optimizer in PER_REVIEW and not (self.ngrams and self.hidden_units == 0):
            raise UsageError(f"--optimizer {self.optimizer} (one step per review, as fastText trains) "
                             "trains the n-gram model without a hidden layer: give --ngrams N and "
                             "--hidden-units 0")
        variants = npembed.optimizers.Adam.VARIANTS
        if self.adam_variant not in variants:
            raise UsageError(f"--adam must be one of {', '.join(variants)}, got {self.adam_variant!r}")
        self._check_memory(vocab_size)

    def _check_memory(self, vocab_size: int) -> None:
        """Refuse a model or batch that cannot fit in this machine's memory (it would be killed
        or swap for minutes before failing)."""
        dim, units = self.embedding_dim, self.hidden_units
        table = 4 * self.table_rows(vocab_size) * dim * 4                 # float32 weights, gradient, Adam's m and v
        dense = 4 * 4 * (dim * units + units * 1)
        batch = self.batch_size * LONGEST_REVIEW * (8 + 4 * dim)    # ids and one float32 pass
        need, have = table + dense + batch, _physical_memory()
        if have and need > have:
            raise UsageError(f"--embedding-dim {dim}, --hidden-units {units} and --batch-size "
                             f"{self.batch_size} need about {need / 2**30:.1f} GiB, more than this "
                             f"machine's {have / 2**30:.1f} GiB: choose smaller values")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, document) -> "TrainConfig":
        """A TrainConfig from a parsed config.json, or UsageError saying what is wrong."""
        if not isinstance(document, dict):
            raise UsageError(f"it holds a {type(document).__name__}, not an object of options")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(document) - names)
        if unknown:
            raise UsageError(f"unknown options {unknown}")
        config = cls(**document)
        config.validate()
        return config


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise UsageError(f"--{name.replace('_', '-')} must be an integer {bound}, got {value!r}")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# `npembed train --ngrams N`: the settings chosen on the validation split
# (benchmarks/ngram_search.py, every run in benchmarks/results/ngram_search.jsonl; README
# "Beyond the tutorial"); any option given overrides them.  Rule: among the configurations whose
# epoch is no slower than fastText's single-threaded one (the speed target, per training
# review), the best validation accuracy at the lowest-val_loss epoch.  Search 3 (row-wise Adagrad,
# one step per review: n 2 or 3, lr 0.05 to 0.4, constant or decaying): bigrams, lr 0.1, constant,
# 0.9112 at epoch 2, about 0.55 s an epoch (trigrams reached 0.912 at about 1.0 s, slower than
# fastText's 0.75).  Search 4, per-row rates from the naive-Bayes log-count ratios (--nb-rates):
# bigrams, lr 0.4, 0.9144, but 29.5 us a review in the comparison against fastText's 26.8 (the
# rates' lookup), so not eligible; on the test set it scored 0.8952 against 0.8947 (README).
# Searches 1 and 2 (lazy Adam, batch-mean steps, about 2 s an epoch: best trigrams, lr 0.01,
# 0.9124) and fastText's SGD (best 0.8928) are there too.
NGRAM_DEFAULTS = dict(ngrams=2, buckets=2_000_000, embedding_dim=16, hidden_units=0, mask=True,
                      optimizer="rowwise-adagrad", learning_rate=0.1, batch_size=32, epochs=5,
                      early_stopping=1, adam_variant="lazy", validation_steps=None, validation_reviews=2500)


# The learning rate each (optimizer, --nb-rates) search chose on the validation split (README):
# row-wise Adagrad 0.4 with NB rates and 0.1 without, lazy Adam 0.01 (trigrams), fastText's SGD
# 1 (over 5 epochs).
NGRAM_RATES = {("rowwise-adagrad", True): 0.4, ("rowwise-adagrad", False): 0.1, ("adam", False): 0.01,
               ("sgd", False): 1.0}


OPTIMIZERS = ("adam", "sgd", "rowwise-adagrad")
PER_REVIEW = ("sgd", "rowwise-adagrad")       # one step per review (npembed/per_review.py)


def build_model(config: TrainConfig, vocab_size: int, steps_per_epoch: int | None = None) -> npembed.Sequential:
    """The tutorial's model, over ``config.table_rows(vocab_size)`` rows (n-grams included).

    ``--optimizer sgd``: its rate decays linearly to 0 over ``epochs * steps_per_epoch`` steps
    (fastText's schedule); without steps_per_epoch it stays constant.  ``rowwise-adagrad`` keeps
    its rate (chosen so on the validation split)."""
    model = npembed.tutorial_model(vocab_size=config.table_rows(vocab_size), embedding_dim=config.embedding_dim,
                                   hidden_units=config.hidden_units, mask_zero=config.mask, seed=config.seed)
    if config.optimizer == "sgd":
        decay = config.epochs * steps_per_epoch if steps_per_epoch else None
        optimizer = npembed.optimizers.SGD(learning_rate=config.learning_rate, decay_steps=decay)
    elif config.optimizer == "rowwise-adagrad":       # constant rate: A_r already shrinks the steps
        optimizer = npembed.optimizers.RowwiseAdagrad(learning_rate=config.learning_rate)
    else:
        optimizer = npembed.optimizers.Adam(learning_rate=config.learning_rate, variant=config.adam_variant)
    model.compile(optimizer=optimizer,
                  loss=npembed.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return model
