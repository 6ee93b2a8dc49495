"""fastText's model: each review's subwords and their hashed 2..N-grams, averaged, then Dense(1).

    ids + hashed n-gram ids -> Embedding(V + buckets, 16, mask_zero=True) -> average -> Dense(1)

Inputs (``prepare``): a review's subword ids followed by the ids of its hashed n-grams
(``datasets/ngrams.py``: the n-gram of subwords x_t..x_{t+k-1} is row ``V + hash % buckets``),
cached beside the encoded splits.  Every command that feeds the model (train, evaluate,
predict, grads) prepares its reviews here, so they all see the same ids.

Fitted and chosen without the test set: it validates on ``validation_reviews`` train reviews
held out with seed 0 (``datasets.holdout``), trains on the rest, and evaluates the test split
once, after training (``validation_reviews`` 0: trains on all of them, for a number of epochs
chosen before).  Its optimizers take one step per review as fastText does
(``per_review.train_step``): ``rowwise-adagrad`` (the default) and ``sgd`` (fastText's, its
rate decaying linearly to 0 over the run); ``adam`` (lazy) takes batch steps and is the one
for a hidden layer.

Defaults, chosen on the validation split (``benchmarks/ngram_search.py``, every run in
``benchmarks/results/ngram_search.jsonl``; docs/ngrams.md).  Rule: among the configurations
whose epoch is no slower than fastText's single-threaded one (per training review), the best
validation accuracy at the lowest-val_loss epoch.  Search 3 (row-wise Adagrad, one step per
review: n 2 or 3, lr 0.05 to 0.4, constant or decaying): bigrams, lr 0.1, constant, 0.9112 at
epoch 2, about 0.55 s an epoch (trigrams reached 0.912 at about 1.0 s, slower than fastText's
0.75).  Searches 1 and 2 (lazy Adam, batch-mean steps, about 2 s an epoch: best trigrams, lr
0.01, 0.9124) and fastText's SGD (best 0.8928, lr 1 over 5 epochs) are there too.
"""
from __future__ import annotations

import sys

from npembed import per_review
from npembed.checks import check_int_option
from npembed.datasets.batching import EncodedSplit
from npembed.datasets.holdout import holdout
from npembed.datasets.ngrams import check_ngram_options, load_ngram_split, ngram_split
from npembed.errors import UsageError
from npembed.losses import BinaryCrossentropy
from npembed.models.common import make_optimizer
from npembed.models.tutorial import tutorial_model

NAME = "ngrams"
HELP = ("fastText's model: subwords plus their hashed 2..N-grams -> Embedding (mask_zero) -> "
        "average -> Dense(1), one step per review")
OPTIONS = {"ngrams": 2, "buckets": 2_000_000, "validation_reviews": 2500}
DEFAULTS = dict(embedding_dim=16, hidden_units=0, mask=True, optimizer="rowwise-adagrad", batch_size=32,
                epochs=5, early_stopping=1, adam_variant="lazy", validation_steps=None, **OPTIONS)
RATES = {"rowwise-adagrad": 0.1, "adam": 0.01, "sgd": 1.0}   # each optimizer's search chose
PER_REVIEW = ("sgd", "rowwise-adagrad")
VALIDATION_SEED = 0


def add_options(group) -> None:
    group.description = (f"{HELP}. Its defaults, chosen on the validation split (docs/ngrams.md): "
                         f"--optimizer {DEFAULTS['optimizer']} --learning-rate {RATES['rowwise-adagrad']} "
                         f"(adam {RATES['adam']}, sgd {RATES['sgd']}; with --hidden-units, adam) "
                         f"--batch-size {DEFAULTS['batch_size']} --epochs {DEFAULTS['epochs']} "
                         f"--early-stopping {DEFAULTS['early_stopping']} --hidden-units 0 --mask --adam lazy")
    group.add_argument("--ngrams", type=int, metavar="N", help="tokens plus their hashed 2..N-grams "
                       f"(default {OPTIONS['ngrams']}; 1: tokens only)")
    group.add_argument("--buckets", type=int, help=f"rows for the hashed n-grams (default {OPTIONS['buckets']:,})")
    group.add_argument("--validation-reviews", type=int, help="train reviews held out (seed 0) for "
                       f"validation and early stopping (default {OPTIONS['validation_reviews']}; 0: train "
                       "on all of them for --epochs, e.g. the epochs a validated run chose); the test set "
                       "is evaluated once, at the end")


def defaults(asked: dict) -> dict:
    """DEFAULTS; the rate the optimizer's search chose; a hidden layer without an optimizer given
    trains with Adam; with ``validation_reviews=0`` early stopping is off unless asked for."""
    chosen = dict(DEFAULTS)
    if asked.get("hidden_units") and "optimizer" not in asked:
        chosen["optimizer"] = "adam"                 # the per-review optimizers have no hidden layer
    optimizer = asked.get("optimizer", chosen["optimizer"])
    chosen["learning_rate"] = RATES.get(optimizer, RATES["rowwise-adagrad"])
    if asked.get("validation_reviews") == 0:
        chosen["early_stopping"] = 0
    return chosen


def check(config, vocab_size: int) -> None:
    options = config.model_options
    check_ngram_options(options["ngrams"], options["buckets"], vocab_size)
    check_int_option("validation_reviews", options["validation_reviews"], 0, 24_999)
    if not config.mask:
        raise UsageError("--model ngrams averages over each review's real tokens: it needs --mask")
    if options["validation_reviews"] == 0 and config.early_stopping:
        raise UsageError("--early-stopping needs validation reviews to watch: with --validation-reviews 0 "
                         "give --epochs (the count a run with validation chose) and no --early-stopping")
    if config.optimizer in PER_REVIEW and config.hidden_units:
        raise UsageError(f"--optimizer {config.optimizer} (one step per review, as fastText trains) "
                         "trains the n-gram model without a hidden layer: give --hidden-units 0")


def table_rows(config, vocab_size: int) -> int:
    """The vocabulary, plus the buckets when there are n-grams (n > 1)."""
    options = config.model_options
    return vocab_size + (options["buckets"] if options["ngrams"] > 1 else 0)


def prepare(split: EncodedSplit, config, vocab_size: int, cache_folder=None) -> EncodedSplit:
    """Each review's ids followed by its hashed n-grams' (cached in ``cache_folder`` when given)."""
    options = config.model_options
    if cache_folder is None:
        return ngram_split(split, options["ngrams"], options["buckets"], vocab_size)
    return load_ngram_split(split, options["ngrams"], options["buckets"], vocab_size, cache_folder)


def splits(config, dataset, progress: bool = False):
    """(train, validation, test), prepared; validation None with ``validation_reviews`` 0."""
    options = config.model_options
    if progress:
        print(f"npembed: adding hashed {options['ngrams']}-grams ({options['buckets']:,} buckets; cached "
              "after the first run)", file=sys.stderr, flush=True)
    vocab, folder = dataset.encoder.vocab_size, getattr(dataset, "cache_folder", None)
    train, test = (prepare(split, config, vocab, folder) for split in (dataset.train, dataset.test))
    if options["validation_reviews"] == 0:           # a refit on every train review: no validation
        return train, None, test
    train, validation = holdout(train, options["validation_reviews"], VALIDATION_SEED)
    return train, validation, test


def build(config, vocab_size: int, steps_per_epoch: int | None = None, dtype="float32"):
    """The tutorial's layers over ``table_rows`` rows, masked; sgd decays over the whole run."""
    model = tutorial_model(table_rows(config, vocab_size), config.embedding_dim, config.hidden_units,
                           mask_zero=True, seed=config.seed, dtype=dtype)
    model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                  loss=BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def fit_step(config):
    """fastText's one step per review for sgd and rowwise-adagrad; batch steps for adam."""
    return per_review.train_step if config.optimizer in PER_REVIEW else None
