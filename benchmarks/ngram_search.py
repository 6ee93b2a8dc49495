"""The n-gram model's hyperparameter search, on the validation split only (never the test set).

    python -m benchmarks.ngram_search [--out benchmarks/results/ngram_search.jsonl] [--max-epochs 6] [--grid JSON]

Each configuration trains ``Embedding(V + buckets, dim, mask_zero=True) -> average -> Dense(1)``
(plus ``Dense(hidden, relu)`` when hidden > 0) with lazy Adam (or ``"optimizer": "sgd"``:
fastText's per-review SGD, or ``"rowwise-adagrad"``, one step per review, each with its rate
decaying linearly to 0 over ``--max-epochs`` unless ``"decay": false``) on the training reviews minus the
2,500 held out (``datasets.holdout``, seed 0), evaluates the held-out reviews after every
epoch, and stops once val_loss has not improved for one epoch.  One JSON line per configuration:
its settings, every epoch's val_loss / val_accuracy / seconds, and the best epoch (lowest
val_loss), whose val_accuracy ranks the configuration.  The test split is not loaded.
Optional settings: ``"seed"`` (the model's initialisation and the batches' order, default 0),
``"train_reviews"`` (train on that many of the 22,500, drawn with seed 1), ``"binary"`` (each
id once per review), ``"tokens": "words"``, ``"decay"``, ``"patience"``, ``"nb_init"``,
``"nb_rates"`` (the naive-Bayes experiments of ``benchmarks/naive_bayes.py``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

VALIDATION_REVIEWS, VALIDATION_SEED = 2500, 0


def run_one(data, settings: dict, max_epochs: int) -> dict:
    import npembed
    from npembed import per_review
    from npembed.datasets.holdout import holdout
    from npembed.datasets.ngrams import load_ngram_split
    if settings.get("tokens", "subwords") == "words":
        vocab, train = word_split(settings)
        from npembed.datasets.ngrams import ngram_split
        train = ngram_split(train, settings["ngrams"], settings["buckets"], vocab)
    else:
        vocab = data.encoder.vocab_size
        train = load_ngram_split(data.train, settings["ngrams"], settings["buckets"], vocab, data.cache_folder)
    train, validation = holdout(train, VALIDATION_REVIEWS, VALIDATION_SEED)
    if settings.get("train_reviews"):                  # fewer training reviews (seeded): what more data is worth
        from npembed.datasets.holdout import subset
        keep = np.random.default_rng(1).choice(len(train), settings["train_reviews"], replace=False)
        train = subset(train, np.sort(keep), train.name)
    if settings.get("binary"):                         # each id once per review (ngrams.distinct_per_review)
        from npembed.datasets.ngrams import distinct_per_review
        train, validation = distinct_per_review(train), distinct_per_review(validation)
    model = npembed.tutorial_model(vocab + settings["buckets"], settings["dim"], settings["hidden"],
                                   mask_zero=True, seed=settings.get("seed", 0))
    if settings.get("nb_init"):
        from benchmarks.naive_bayes import nb_initialise
        nb_initialise(model, train)                   # the training reviews only
    batches = train.batches(settings["batch"], 1000, seed=settings.get("seed", 0))
    decay_steps = max_epochs * len(batches) if settings.get("decay", True) else None
    step = per_review.train_step                       # one step per review, as fastText
    if settings.get("optimizer", "adam") == "sgd":     # fastText's: linear decay over max_epochs
        optimizer = npembed.optimizers.SGD(settings["lr"], decay_steps=decay_steps)
    elif settings.get("nb_rates"):                     # the training reviews' |log-count ratios|
        from benchmarks.naive_bayes import RowRatesAdagrad, log_count_ratio
        rates = np.abs(log_count_ratio(train, vocab + settings["buckets"]))
        optimizer = RowRatesAdagrad(settings["lr"], rates, decay_steps=decay_steps)
    elif settings.get("optimizer") == "rowwise-adagrad":    # the same decay unless "decay": false
        optimizer = npembed.optimizers.RowwiseAdagrad(settings["lr"], decay_steps=decay_steps)
    else:
        optimizer, step = npembed.optimizers.Adam(settings["lr"], variant="lazy"), None
    model.compile(optimizer=optimizer)
    epochs = []
    for epoch in range(max_epochs):
        start = time.perf_counter()
        for ids, labels in batches.for_epoch(epoch):
            step(model, ids, labels) if step else model.train_step(ids, labels)
        seconds = time.perf_counter() - start
        scores = model.evaluate(validation.batches(500, shuffle_buffer=None))
        epochs.append({"epoch": epoch + 1, "seconds": round(seconds, 2),
                       "val_loss": round(scores["loss"], 5), "val_accuracy": scores["accuracy"]})
        patience = settings.get("patience", 1)
        if len(epochs) > patience and min(e["val_loss"] for e in epochs[-patience:]) >= \
                min(e["val_loss"] for e in epochs[:-patience]):
            break
    best = min(epochs, key=lambda e: e["val_loss"])
    return {**settings, "max_epochs": max_epochs, "epochs": epochs, "best_epoch": best["epoch"],
            "val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"]}


def word_split(settings: dict):
    """(vocabulary size, the train reviews as word ids): ``datasets/words.py``, its vocabulary
    from the training reviews only (the held-out validation reviews are left out of it)."""
    from npembed.datasets import words
    from npembed.datasets.holdout import held_out_mask
    from npembed.datasets.sources import read_reviews, resolve_source
    reviews = read_reviews(resolve_source(None))["train"]
    tokens = [words.tokenize(review.text) for review in reviews]
    held = held_out_mask(len(reviews), VALIDATION_REVIEWS, VALIDATION_SEED)
    vocabulary = words.build_vocabulary((t for t, h in zip(tokens, held) if not h), settings.get("min_count", 1))
    labels = np.array([review.label for review in reviews])
    keys = np.array([review.key for review in reviews])
    return len(vocabulary) + 2, words.encode("train", tokens, vocabulary, labels, keys)


GRID = {"optimizer": ["adam"], "ngrams": [2, 3], "buckets": [2_000_000], "dim": [16], "hidden": [0],
        "lr": [0.003, 0.01, 0.03], "batch": [10, 32]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/ngram_search.jsonl")
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--grid", help="JSON object overriding GRID's lists")
    args = parser.parse_args(argv)
    from npembed.datasets import load_imdb_subwords8k
    data = load_imdb_subwords8k(progress=False)
    grid = {**GRID, **(json.loads(args.grid) if args.grid else {})}
    for values in itertools.product(*grid.values()):
        result = run_one(data, dict(zip(grid, values)), args.max_epochs)
        line = json.dumps(result)
        print(line, flush=True)
        with open(args.out, "a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
