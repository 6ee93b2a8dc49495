"""The ``npembed`` command: prepare, train, evaluate, predict, neighbors, plot-embeddings, grads."""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from npembed import plots
from npembed.config import COMMON, TrainConfig
from npembed.datasets import load_imdb_subwords8k
from npembed.errors import FILESYSTEM, NpembedError, UsageError
from npembed.export import nearest_neighbors
from npembed.gradients_report import gradients_report
from npembed.kernels import BACKENDS, backend
from npembed.losses import sigmoid
from npembed.models import MODELS, model_module, text_inputs
from npembed.optimizers import Adam
from npembed.runfolder import check_vocabulary, vocabulary_checksum
from npembed.training import load_run, train


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    import warnings
    format_warning, handlers, errors = warnings.formatwarning, _stop_on_termination(), _printable_output()
    # a warning is a line of the command's output, not a source location
    warnings.formatwarning = lambda message, *_, **__: f"npembed {args.command}: warning: {message}\n"
    try:
        _check_environment()
        return args.handler(args) or 0
    except NpembedError as err:
        print(f"npembed {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, Terminated) else signal.SIGINT
        print(f"\nnpembed {args.command}: {'interrupted' if signum == signal.SIGINT else 'terminated'} "
              f"({signal.Signals(signum).name}). {_after_interruption(args)}", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:                 # `npembed neighbors ... | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:                  # a full disk, a read-only file system, ...
        where = f" {err.filename}" if err.filename else ""
        print(f"npembed {args.command}: error: could not read or write{where}: {err.strerror or err}. "
              f"Fix the location (space, permissions) and {_run_again(args)}", file=sys.stderr)
        return FILESYSTEM
    finally:
        warnings.formatwarning = format_warning
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for stream, previous in errors.items():
            stream.reconfigure(errors=previous)


def _printable_output() -> dict:
    """On a terminal that takes only some characters (PYTHONIOENCODING=ascii, a latin-1 locale),
    print a subword or review it cannot show as an escape (\\xe9) instead of failing with
    UnicodeEncodeError; returns the streams changed, with the error handler to put back."""
    changed = {}
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if hasattr(stream, "reconfigure") and encoding not in ("utf8", "utf16", "utf32"):
            changed[stream] = stream.errors
            stream.reconfigure(errors="backslashreplace")
    return changed


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the process is, so that it ends as Ctrl-C does: locks
    released, temporary files removed, a message instead of a silent death."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on_termination() -> dict:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (where their handler is the default);
    returns the handlers to put back."""
    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return previous

    def terminate(signum, frame):
        raise Terminated(signum)
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None and signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, terminate)
    return previous


def _after_interruption(args) -> str:
    if args.command == "train":
        if not _resumable(args):
            return f"No run was started in {args.out}: run the same command again to start it."
        return (f"Nothing is lost: `npembed train --out {args.out} --resume` continues from the last "
                "finished epoch.")
    if args.command == "prepare":
        return "Nothing half-written is used: run it again to finish the cache."
    return "Nothing was changed."


def _resumable(args) -> bool:
    """Whether ``train``'s --out holds a run that --resume continues (its config.json is
    written only once the data and the n-grams are ready; a start stopped before is undone)."""
    try:
        return (Path(args.out) / "config.json").is_file()
    except OSError:                         # a name too long, a loop: no run there either
        return False


def _run_again(args) -> str:
    if args.command == "train" and _resumable(args):
        return f"continue with `npembed train --out {args.out} --resume`."
    return "run the command again."


def _check_environment() -> None:
    """Environment variables are options too: check them before any work."""
    kernels = os.environ.get("NPEMBED_KERNELS", "").strip().lower()
    if kernels and kernels not in BACKENDS:
        raise UsageError(f"NPEMBED_KERNELS={os.environ['NPEMBED_KERNELS']!r} is not a kernel backend: "
                         f"use one of {', '.join(BACKENDS)}, or unset it")
    if kernels == "native":             # asked for by name: fail now, not after minutes of work
        backend()


# --------------------------------------------------------------------------- commands
def cmd_prepare(args) -> None:
    import time
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
    asked = _asked_options(args)
    if args.resume:
        results = train(asked, args.out, data=args.data, resume=True)
        print(f"test accuracy {results['test_accuracy']:.4f} on {results['test_reviews']:,} reviews")
        return
    config = TrainConfig.for_model(**asked)
    results = train(config, args.out, data=args.data)
    print(f"run folder: {args.out}  (history.json, loss.png, accuracy.png, vecs.tsv, meta.tsv, "
          f"projector_config.pbtxt, checkpoint.npz)")
    print(f"test accuracy {results['test_accuracy']:.4f} on {results['test_reviews']:,} reviews")


def _asked_options(args) -> dict:
    """The options given on the command line (left out: None), by name; one of a model other
    than --model's (or, on --resume, given without --model) is refused by TrainConfig / train."""
    names = [*COMMON, "model", *(name for module in MODELS.values() for name in module.OPTIONS)]
    asked = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if asked.get("validation_steps") == 0:
        asked["validation_steps"] = None                   # 0: the whole test split
    if not args.resume:
        asked.setdefault("model", "tutorial")
    return asked


def _run_data(args, run_encoder):
    """The data for a command on a run, refused unless it has the run's vocabulary."""
    data = load_imdb_subwords8k(args.data, progress=False)
    check_vocabulary(args.run, vocabulary_checksum(run_encoder.subwords), data.encoder, data.source.describe())
    return data


def cmd_evaluate(args) -> None:
    model, config, encoder = load_run(args.run)
    data = _run_data(args, encoder)
    batch_size = args.batch_size or config.batch_size
    dataclasses.replace(config, batch_size=batch_size).validate(encoder.vocab_size)   # the memory check
    split = model_module(config.model).prepare(data.split(args.split), config, encoder.vocab_size,
                                               data.cache_folder)
    result = model.evaluate(split.batches(batch_size, shuffle_buffer=None))
    print(f"{args.split} ({len(split):,} reviews, batch {batch_size}, "
          f"{'masked' if config.mask else 'unmasked: padding counts in the average'}): "
          f"loss {result['loss']:.4f} - accuracy {result['accuracy']:.4f}")


def cmd_predict(args) -> None:
    texts = _review_texts(args)
    model, config, encoder = load_run(args.run)
    for label, text in texts:
        ids = text_inputs(config, encoder, text)
        _print_prediction(model, ids, label)
        if args.pad:                    # the RNN tutorial's sample_predict(text, pad=True)
            padded = np.zeros((1, max(args.pad, ids.shape[1])), dtype=ids.dtype)
            padded[:, :ids.shape[1]] = ids
            added = padded.shape[1] - ids.shape[1]
            _print_prediction(model, padded, f"{label} (+{added} padding ids: {padded.shape[1]} positions)")


def _print_prediction(model, ids: np.ndarray, label: str) -> None:
    """One line: the probability of 'positive', the class, and what was predicted."""
    logit = float(model(ids)[0, 0])
    print(f"{float(sigmoid(np.array(logit))):8.4f}  {'positive' if logit > 0 else 'negative'}  {label}")


MAX_REVIEW_BYTES = 16 << 20     # all reviews of one `predict` together; an IMDB review is under 14 kB


def _review_texts(args) -> list[tuple[str, str]]:
    """(label to print, text) of each review: TEXT arguments, '-' for stdin, --file PATH; all
    together at most MAX_REVIEW_BYTES (``--file /dev/zero`` is a message, not the OOM killer)."""
    reviews, budget = [], [MAX_REVIEW_BYTES]
    if args.texts.count("-") > 1:
        raise UsageError("'-' (standard input) is given more than once: it holds one review; pass "
                         "the others as TEXT or --file PATH")
    for text in args.texts:
        if text == "-":
            if sys.stdin is None:
                raise UsageError("'-' reads a review from standard input, which is closed: pipe the "
                                 "review in, or pass it as TEXT or --file PATH")
            reviews.append(("<stdin>", _decode(_read_limited(sys.stdin.buffer, "standard input", budget),
                                               "standard input")))
        else:                               # undo Python's surrogateescape of non-UTF-8 argv bytes
            data = os.fsencode(text)
            budget[0] -= len(data)
            reviews.append((None, _decode(data, f"argument {text!r}")))
    for path in args.file or []:
        try:
            with open(path, "rb") as handle:
                data = _read_limited(handle, f"--file {path}", budget)
        except OSError as err:
            raise UsageError(f"cannot read --file {path}: {err.strerror}") from None
        reviews.append((path, _decode(data, f"--file {path}")))
    if not reviews:
        raise UsageError("nothing to predict: give review TEXTs, '-' to read one from standard "
                         "input, or --file PATH")
    for label, text in reviews:
        if not text.strip():
            raise UsageError(f"{'a TEXT argument' if label is None else label} is empty or only "
                             "whitespace: there is nothing to predict")
    return [(label or repr(text if len(text) <= 80 else text[:77] + "..."), text) for label, text in reviews]


def _read_limited(handle, what: str, budget: list[int]) -> bytes:
    """Read ``handle`` to its end in 1 MiB blocks (a signal is handled between two), refusing
    past ``budget[0]`` bytes, which is lowered by what was read."""
    from npembed.errors import UsageError
    blocks, size = [], 0
    while True:
        block = handle.read(min(1 << 20, max(budget[0] - size, 0) + 1))
        if not block:
            break
        blocks.append(block)
        size += len(block)
        if size > budget[0]:
            raise UsageError(f"{what} holds more than {MAX_REVIEW_BYTES >> 20} MiB of review text "
                             "(all reviews of one call together): pass reviews of ordinary length, "
                             "not a device or a large file")
    budget[0] -= size
    return b"".join(blocks)


def _decode(data: bytes, what: str) -> str:
    from npembed.errors import UsageError
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{what} is not valid UTF-8 (byte {data[err.start]:#04x} at offset "
                         f"{err.start}): pass text in UTF-8") from None


def cmd_neighbors(args) -> int:
    model, _, encoder = load_run(args.run)
    table = model.weights[0]
    subwords = encoder.subwords
    lookup = {s: i + 1 for i, s in enumerate(subwords)}
    word = _decode(os.fsencode(args.word), f"WORD {args.word!r}")   # undo surrogateescape, as predict
    row = lookup.get(word + "_") or lookup.get(word)
    if row is not None:
        print(f"{word!r} is subword {row} ({encoder.id_to_piece(row)!r})")
        query = row
    else:
        ids = encoder.encode(word)
        pieces = [encoder.id_to_piece(i) for i in ids]
        if not ids:
            raise UsageError(f"WORD {word!r} has no subwords: give a word, e.g. `npembed neighbors "
                             f"--run {args.run} good`")
        if all(p.startswith("<byte") for p in pieces):
            raise UsageError(f"WORD {word!r} is not in the vocabulary: it encodes only as raw bytes "
                             f"{pieces}, which carry no meaning of their own; give a word")
        print(f"{word!r} is not one subword: it splits into {pieces}; using the mean of their vectors")
        query = table[ids].mean(axis=0)
    candidates = len(subwords) - (1 if np.ndim(query) == 0 else 0)
    if args.k > candidates:
        print(f"(-k {args.k} is more than the {candidates} other subwords: listing all of them)")
    for index, similarity in nearest_neighbors(table, query, k=min(args.k, candidates),
                                               exclude=(0, *range(len(subwords) + 1, table.shape[0]))):
        print(f"{similarity:7.4f}  {encoder.id_to_piece(index)!r}")


def cmd_plot_embeddings(args) -> None:
    out = Path(args.out) if args.out else Path(args.run) / "embedding_map.png"
    plots.check_figure_path(out)
    model, _, encoder = load_run(args.run)
    data = _run_data(args, encoder)
    counts = np.bincount(data.train.ids, minlength=encoder.vocab_size)
    counts[0] = 0
    counts[len(encoder.subwords) + 1:] = 0            # byte tokens
    top = min(args.top, int(np.count_nonzero(counts)))
    if top < args.top:
        print(f"(--top {args.top}: only {top} subwords occur in the train split; plotting those)")
    rows = np.argsort(-counts, kind="stable")[:top]
    labels = [_printable(encoder.id_to_piece(int(r))) for r in rows]
    plots.plot_embedding_map(model.weights[0], labels, rows, out,
                       title=f"{top} most frequent subwords, first two principal components")
    print(f"wrote {out}")


def _printable(piece: str) -> str:
    """A subword as a plot label: control characters (two subwords hold U+0085) as escapes,
    which every font can draw."""
    return piece if piece.isprintable() else repr(piece)[1:-1]


def cmd_grads(args) -> None:
    gradients_report(args)


# --------------------------------------------------------------------------- arguments
def at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    return between(low, None)


def between(low: int, high: int | None):
    """An argparse type: an integer from ``low`` to ``high`` (None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"from {low} to {high:,}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}" if high is None else f"integer {low}..{high}"
    return parse


MAX_PAD = 20_000               # positions; the longest IMDB review is under 4,000 subwords
MAX_MAP_LABELS = 2000          # past this a map's labels cover each other, and drawing takes minutes


positive_int = at_least(1)


def path_arg(text: str) -> str:
    """An argparse type: a path, not empty (an empty --out would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: name a file or folder")
    return text


def _train_options(sub) -> None:
    """``npembed train``'s options: the common ones, then one group per model (its module's own)."""
    sub.add_argument("--model", choices=list(MODELS), help="which model (default tutorial); each one's "
                     "defaults are its own (npembed/models/)")
    sub.add_argument("--out", default="runs/tutorial", type=path_arg, help="run folder (default runs/tutorial)")
    sub.add_argument("--resume", action="store_true", help="continue the run in --out from its last "
                     "checkpoint, with the options it was started with (only --epochs may be raised)")
    # No defaults here (None = not given, so that --resume can refuse a changed option): a new
    # run takes its model's, the tutorial's being TrainConfig's own.
    defaults = TrainConfig()
    sub.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    sub.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    sub.add_argument("--embedding-dim", type=int, help=f"default {defaults.embedding_dim}")
    sub.add_argument("--hidden-units", type=int, help=f"default {defaults.hidden_units}; 0 removes "
                     "the Dense(16, relu) layer")
    sub.add_argument("--mask", action="store_true", default=None,
                     help="Embedding(mask_zero=True): average over real tokens only")
    sub.add_argument("--learning-rate", type=float, help=f"default {defaults.learning_rate}")
    sub.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    sub.add_argument("--validation-steps", type=int, help=f"default {defaults.validation_steps}; 0 "
                     "validates on the whole validation split")
    sub.add_argument("--shuffle-buffer", type=int, help=f"default {defaults.shuffle_buffer}")
    sub.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                     help="stop after PATIENCE epochs without a better val_loss and restore the best epoch")
    sub.add_argument("--steps-per-epoch", type=int, help="cut epochs short (quick runs)")
    sub.add_argument("--optimizer", choices=["adam", "sgd", "rowwise-adagrad"],
                     help="default adam (see --adam); for --model ngrams, one step per review: "
                          "rowwise-adagrad (its default), Adagrad with one accumulator per embedding row; "
                          "sgd, fastText's plain SGD, its rate decaying linearly to 0 over the run "
                          "(npembed/optimizers.py)")
    sub.add_argument("--adam", dest="adam_variant", choices=Adam.VARIANTS,
                     help=f"default {defaults.adam_variant}, the tutorial's tf.keras Adam (textbook "
                          "Adam); keras3: Keras 3's, which squares each embedding slice before "
                          "summing; lazy: updates only the looked-up rows (npembed/optimizers.py)")
    for name, module in MODELS.items():
        module.add_options(sub.add_argument_group(f"--model {name}", module.HELP))


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
    sub.add_argument("--cache-dir", type=path_arg, help="default $NPEMBED_CACHE or ~/.cache/npembed")
    sub.add_argument("--vocab", type=path_arg, help="encode with this .subwords file instead of building the vocabulary")

    sub = command("train", cmd_train, "train a model (the tutorial's, with its settings, by default) into a run folder")
    _train_options(sub)
    data_option(sub)

    sub = command("evaluate", cmd_evaluate, "evaluate a run's final weights on a whole split")
    data_option(sub)
    sub.add_argument("--run", default="runs/tutorial", type=path_arg)
    sub.add_argument("--split", default="test", choices=["train", "test"])
    sub.add_argument("--batch-size", type=positive_int, default=None, help="default: the run's (see docs/data.md)")

    sub = command("predict", cmd_predict, "probability that each review text is positive")
    sub.add_argument("texts", nargs="*", metavar="TEXT", help="a review; '-' reads one from standard input")
    sub.add_argument("--file", action="append", type=path_arg, metavar="PATH", help="a review in a UTF-8 text file "
                     "(repeatable; for reviews too long for the command line)")
    sub.add_argument("--pad", type=between(1, MAX_PAD), metavar="N",
                     help="also predict each review zero-padded to N positions (the RNN tutorial's "
                          f"pad=True; at most {MAX_PAD:,}): without a mask the padding changes the prediction")
    sub.add_argument("--run", default="runs/tutorial", type=path_arg)

    sub = command("neighbors", cmd_neighbors, "nearest subwords to WORD by cosine similarity")
    sub.add_argument("word", metavar="WORD")
    sub.add_argument("--run", default="runs/tutorial", type=path_arg)
    sub.add_argument("-k", type=positive_int, default=10, help="how many neighbours (default 10)")

    sub = command("plot-embeddings", cmd_plot_embeddings, "2-D PCA map of the most frequent subwords (PNG)")
    data_option(sub)
    sub.add_argument("--run", default="runs/tutorial", type=path_arg)
    sub.add_argument("--top", type=between(2, MAX_MAP_LABELS), default=300,
                     help=f"how many subwords (2 to {MAX_MAP_LABELS:,}; default 300)")
    sub.add_argument("--out", help="default RUN/embedding_map.png", type=path_arg)

    sub = command("grads", cmd_grads, "print the gradients of one review or batch, checked by finite "
                                      "differences (and against Keras when TensorFlow is installed)")
    data_option(sub)
    source = sub.add_mutually_exclusive_group()
    source.add_argument("--text", help="a review, as text")
    source.add_argument("--index", type=at_least(0), help="a review of the data set, by index in --split")
    source.add_argument("--batch", type=at_least(0), help="batch N of the tutorial's first epoch (seed 0)")
    sub.add_argument("--split", default="train", choices=["train", "test"])
    sub.add_argument("--label", type=int, choices=[0, 1], help="label for --text (default 1)")
    sub.add_argument("--run", type=path_arg, help="use a run's trained weights (default: a fresh model, seed 0)")
    sub.add_argument("--mask", action="store_true", help="fresh model with mask_zero=True")
    sub.add_argument("--rows", type=positive_int, default=12, help="embedding rows to list")
    sub.add_argument("--no-keras", action="store_true", help="skip the Keras comparison")
    return parser


if __name__ == "__main__":
    sys.exit(main())
