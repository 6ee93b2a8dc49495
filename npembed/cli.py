"""The ``npembed`` command: prepare, train, evaluate, predict, neighbors, plot-embeddings, grads."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from npembed.checkpoint import CheckpointError
    from npembed.datasets import DataError
    from npembed.training import RunError
    try:
        return args.handler(args) or 0
    except (DataError, RunError, CheckpointError) as err:
        print(f"npembed {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nnpembed {args.command}: interrupted. A training run resumes from its last "
              "checkpoint with `npembed train --out RUN --resume`.", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- commands
def cmd_prepare(args) -> None:
    import time
    from npembed.datasets import load_imdb_subwords8k
    start = time.perf_counter()
    data = load_imdb_subwords8k(args.data, cache_dir=args.cache_dir, vocab=args.vocab)
    print(f"data: {data.source.describe()}")
    print(f"cache: {data.cache_folder}")
    print(f"vocabulary: vocab_size {data.encoder.vocab_size}, first subwords {data.encoder.subwords[:10]}")
    for split in (data.train, data.test):
        lengths = split.lengths
        print(f"{split.name}: {len(split):,} reviews ({int(split.labels.sum()):,} positive), "
              f"{int(lengths.sum()):,} subwords, length mean {lengths.mean():.1f} / median "
              f"{np.median(lengths):.0f} / max {lengths.max()}")
    print(f"ready in {time.perf_counter() - start:.1f} s")


def cmd_train(args) -> None:
    from npembed.training import TrainConfig, train
    if args.resume:
        # The run's own config.json decides; only the number of epochs may be raised.
        config = TrainConfig(epochs=args.epochs) if args.epochs is not None else None
        results = train(config, args.out, data=args.data, resume=True)
        print(f"test accuracy {results['test_accuracy']:.4f} on {results['test_reviews']:,} reviews")
        return
    config = TrainConfig(epochs=10 if args.epochs is None else args.epochs, batch_size=args.batch_size,
                         embedding_dim=args.embedding_dim,
                         hidden_units=args.hidden_units, mask=args.mask, learning_rate=args.learning_rate,
                         seed=args.seed, validation_steps=args.validation_steps or None,
                         shuffle_buffer=args.shuffle_buffer, early_stopping=args.early_stopping,
                         steps_per_epoch=args.steps_per_epoch, adam_variant=args.adam)
    results = train(config, args.out, data=args.data)
    print(f"run folder: {args.out}  (history.json, loss.png, accuracy.png, vecs.tsv, meta.tsv, "
          f"projector_config.pbtxt, checkpoint.npz)")
    print(f"test accuracy {results['test_accuracy']:.4f} on {results['test_reviews']:,} reviews")


def cmd_evaluate(args) -> None:
    from npembed.datasets import load_imdb_subwords8k
    from npembed.training import load_run
    model, config, _ = load_run(args.run)
    data = load_imdb_subwords8k(args.data)
    batch_size = args.batch_size or config.batch_size
    result = model.evaluate(data.split(args.split).batches(batch_size, shuffle_buffer=None))
    print(f"{args.split} ({len(data.split(args.split)):,} reviews, batch {batch_size}, "
          f"{'masked' if config.mask else 'unmasked: padding counts in the average'}): "
          f"loss {result['loss']:.4f} - accuracy {result['accuracy']:.4f}")


def cmd_predict(args) -> None:
    from npembed.losses import sigmoid
    from npembed.training import load_run
    model, _, encoder = load_run(args.run)
    for text in args.texts:
        ids = encoder.encode(text)
        if not ids:
            print(f"{'':>8}  (empty text: nothing to predict)")
            continue
        logit = float(model(np.array([ids]))[0, 0])
        print(f"{float(sigmoid(np.array(logit))):8.4f}  {'positive' if logit > 0 else 'negative'}  {text!r}")


def cmd_neighbors(args) -> int:
    from npembed.export import nearest_neighbors
    from npembed.training import load_run
    model, _, encoder = load_run(args.run)
    table = model.weights[0]
    subwords = encoder.subwords
    lookup = {s: i + 1 for i, s in enumerate(subwords)}
    word = args.word
    row = lookup.get(word + "_") or lookup.get(word)
    if row is not None:
        print(f"{word!r} is subword {row} ({encoder.id_to_piece(row)!r})")
        query = row
    else:
        ids = encoder.encode(word)
        pieces = [encoder.id_to_piece(i) for i in ids]
        if not ids:
            print(f"npembed neighbors: {word!r} has no subwords", file=sys.stderr)
            return 2
        if all(p.startswith("<byte") for p in pieces):
            print(f"npembed neighbors: {word!r} is not in the vocabulary: it encodes only as raw bytes "
                  f"{pieces}, which carry no meaning of their own", file=sys.stderr)
            return 2
        print(f"{word!r} is not one subword: it splits into {pieces}; using the mean of their vectors")
        query = table[ids].mean(axis=0)
    for index, similarity in nearest_neighbors(table, query, k=args.k):
        print(f"{similarity:7.4f}  {encoder.id_to_piece(index)!r}")


def cmd_plot_embeddings(args) -> None:
    from npembed.datasets import load_imdb_subwords8k
    from npembed.plots import plot_embedding_map
    from npembed.training import load_run
    model, _, encoder = load_run(args.run)
    data = load_imdb_subwords8k(args.data, progress=False)
    counts = np.bincount(data.train.ids, minlength=encoder.vocab_size)
    counts[0] = 0
    counts[len(encoder.subwords) + 1:] = 0            # byte tokens
    rows = np.argsort(-counts)[:args.top]
    labels = [encoder.id_to_piece(int(r)) for r in rows]
    out = args.out or Path(args.run) / "embedding_map.png"
    plot_embedding_map(model.weights[0], labels, rows, out,
                       title=f"{args.top} most frequent subwords, first two principal components")
    print(f"wrote {out}")


def cmd_grads(args) -> None:
    from npembed.gradients_report import gradients_report
    gradients_report(args)


# --------------------------------------------------------------------------- arguments
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npembed", description=(
        "The TensorFlow word-embeddings tutorial, by hand in NumPy. Data: --data PATH or "
        "NPEMBED_DATA (an aclImdb .tar.gz, an extracted aclImdb/ folder, or 'tfds')."))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, handler, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def data_option(sub):
        sub.add_argument("--data", help="aclImdb archive or folder, or 'tfds' (default: $NPEMBED_DATA)")

    sub = command("prepare", cmd_prepare, "build (once) and cache the subwords8k vocabulary and encoded reviews")
    data_option(sub)
    sub.add_argument("--cache-dir", help="default $NPEMBED_CACHE or ~/.cache/npembed")
    sub.add_argument("--vocab", help="encode with this .subwords file instead of building the vocabulary")

    sub = command("train", cmd_train, "train the tutorial's model (its settings by default) into a run folder")
    data_option(sub)
    sub.add_argument("--out", default="runs/tutorial", help="run folder (default runs/tutorial)")
    sub.add_argument("--resume", action="store_true", help="continue the run in --out from its last "
                     "checkpoint, with the options it was started with (only --epochs may be raised)")
    sub.add_argument("--epochs", type=int, default=None, help="default 10")
    sub.add_argument("--batch-size", type=int, default=10)
    sub.add_argument("--embedding-dim", type=int, default=16)
    sub.add_argument("--hidden-units", type=int, default=16, help="0 removes the Dense(16, relu) layer")
    sub.add_argument("--mask", action="store_true", help="Embedding(mask_zero=True): average over real tokens only")
    sub.add_argument("--learning-rate", type=float, default=0.001)
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--validation-steps", type=int, default=20, help="0 validates on the whole test split")
    sub.add_argument("--shuffle-buffer", type=int, default=1000)
    sub.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE",
                     help="stop after PATIENCE epochs without a better val_loss and restore the best epoch")
    sub.add_argument("--steps-per-epoch", type=int, default=None, help="cut epochs short (quick runs)")
    from npembed.optimizers import Adam
    sub.add_argument("--adam", choices=[*Adam.VARIANTS, *Adam.ALIASES], default="keras2",
                     metavar="{" + ",".join(Adam.VARIANTS) + "}",
                     help="keras2: the tutorial's tf.keras Adam (the default, textbook Adam); keras3: "
                          "Keras 3's, which squares each embedding slice; lazy: updates only the "
                          "looked-up rows (see npembed/optimizers.py)")

    sub = command("evaluate", cmd_evaluate, "evaluate a run's final weights on a whole split")
    data_option(sub)
    sub.add_argument("--run", default="runs/tutorial")
    sub.add_argument("--split", default="test", choices=["train", "test"])
    sub.add_argument("--batch-size", type=int, default=None, help="default: the run's (see docs/data.md)")

    sub = command("predict", cmd_predict, "probability that each review text is positive")
    sub.add_argument("texts", nargs="+", metavar="TEXT")
    sub.add_argument("--run", default="runs/tutorial")

    sub = command("neighbors", cmd_neighbors, "nearest subwords to WORD by cosine similarity")
    sub.add_argument("word", metavar="WORD")
    sub.add_argument("--run", default="runs/tutorial")
    sub.add_argument("-k", type=int, default=10)

    sub = command("plot-embeddings", cmd_plot_embeddings, "2-D PCA map of the most frequent subwords (PNG)")
    data_option(sub)
    sub.add_argument("--run", default="runs/tutorial")
    sub.add_argument("--top", type=int, default=300)
    sub.add_argument("--out", help="default RUN/embedding_map.png")

    sub = command("grads", cmd_grads, "print the gradients of one review or batch, checked by finite "
                                      "differences (and against Keras when TensorFlow is installed)")
    data_option(sub)
    source = sub.add_mutually_exclusive_group()
    source.add_argument("--text", help="a review, as text")
    source.add_argument("--index", type=int, help="a review of the data set, by index in --split")
    source.add_argument("--batch", type=int, help="batch N of the tutorial's first epoch (seed 0)")
    sub.add_argument("--split", default="train", choices=["train", "test"])
    sub.add_argument("--label", type=int, choices=[0, 1], help="label for --text (default 1)")
    sub.add_argument("--run", help="use a run's trained weights (default: a fresh model, seed 0)")
    sub.add_argument("--mask", action="store_true", help="fresh model with mask_zero=True")
    sub.add_argument("--rows", type=int, default=12, help="embedding rows to list")
    sub.add_argument("--no-keras", action="store_true", help="skip the Keras comparison")
    return parser


if __name__ == "__main__":
    sys.exit(main())
