"""``npembed grads``: the gradients of one review or batch, laid out for someone checking them.

Prints, in order: the chain rule for the first review of the input, number by number (z, p,
p - y, dpooled, the slice each of its tokens sends, each embedding row as count x slice); each
weight's gradient norm, beside Keras's with their relative difference when TensorFlow is
installed; the embedding rows the input touches; and a finite-difference check (float64) of a
few distinct nonzero entries of every weight.  TensorFlow's own log lines are kept out.
"""
from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile

import numpy as np

import npembed
from npembed.config import TrainConfig, build_model
from npembed.datasets import load_imdb_subwords8k
from npembed.errors import UsageError
from npembed.gradcheck import numerical_gradient, rel_error
from npembed.models import model_module, text_inputs
from npembed.runfolder import check_vocabulary, load_run, vocabulary_checksum


def _inputs(args):
    """(model or None, ids (B, L), labels (B,), encoder, config, description): the review(s) as
    the run's model module prepares them (an n-gram run's reviews carry their hashed n-grams),
    so that z is the one evaluate and predict compute."""
    if args.run:
        model, config, encoder = load_run(args.run)
    else:
        model, config, encoder = None, TrainConfig(mask=bool(args.mask)), None
    if args.text is not None:
        if encoder is None:
            encoder = load_imdb_subwords8k(args.data, progress=False).encoder
        if not encoder.encode(args.text):
            raise UsageError("the text encodes to no subwords")
        label = 1 if args.label is None else args.label
        ids = text_inputs(config, encoder, args.text, label).astype(np.int64)
        return model, ids, np.array([label]), encoder, config, f"the text {args.text[:60]!r} (label {label})"
    data = load_imdb_subwords8k(args.data, progress=False)
    if encoder is not None:
        check_vocabulary(args.run, vocabulary_checksum(encoder.subwords), data.encoder, data.source.describe())
    encoder = encoder or data.encoder
    split = model_module(config.model).prepare(data.split(args.split), config, encoder.vocab_size,
                                               data.cache_folder)
    if args.batch is not None:
        batches = split.batches(10, 1000, seed=0)
        if not 0 <= args.batch < len(batches):
            raise UsageError(f"--batch must be in 0..{len(batches) - 1}")
        ids, labels = next(batches.for_epoch(0, start_step=args.batch))
        return model, ids, labels, encoder, config, f"batch {args.batch} of the tutorial's first epoch ({args.split})"
    index = 0 if args.index is None else args.index
    if not 0 <= index < len(split):
        raise UsageError(f"--index must be in 0..{len(split) - 1}")
    return (model, split.review(index)[None, :].astype(np.int64), split.labels[[index]], encoder, config,
            f"{args.split} review {index} ({split.keys[index]}, label {split.labels[index]})")


def gradients_report(args) -> None:
    model, ids, labels, encoder, config, description = _inputs(args)
    if model is None:
        model = build_model(config, encoder.vocab_size)
    print(f"input: {description}: {ids.shape[0]} review(s), padded length {ids.shape[1]}, "
          f"{np.count_nonzero(ids):,} tokens, {int((ids == 0).sum()):,} padding")
    loss, grads = model.compute_gradients(ids, labels)
    print(f"loss: {loss:.6f}")
    _print_chain(model, ids, labels, encoder, args.rows)
    keras_loss, keras_grads = _keras(model, ids, labels, args)
    _print_norms(model, loss, grads, keras_loss, keras_grads)
    _print_rows(model, grads[0], encoder, args.rows)
    _print_finite_differences(model, ids, labels)


def _print_chain(model, ids, labels, encoder, rows: int) -> None:
    """The chain rule for review 0, read from the layers' caches and the embedding's slices."""
    output, slices = model.layers[-1], model.layers[0].grads["embeddings"]
    if not hasattr(slices, "row_gradient"):     # an LSTM: each position gets its own slice
        print("\n(no chain printed: it follows an average-pooling model; this model's embedding rows "
              "each get their own slice through the LSTM)")
        return
    z = float(output.cache["z"][0, 0])
    p = float(npembed.losses.sigmoid(output.cache["z"])[0, 0])
    batch = ids.shape[0]
    g = slices.row_gradient[0]                                     # the slice of review 0, (D,)
    positions = ids[0] if slices.mask is None else ids[0][slices.mask[0]]
    n = positions.size
    print(f"\nthe chain for review 0 of the input (label y = {labels[0]}), docs/gradients.md:")
    print(f"  z = {z:+.6f}   p = sigmoid(z) = {p:.6f}   p - y = {p - labels[0]:+.6f}")
    print(f"  dz = (p - y) / B = {(p - labels[0]) / batch:+.6e}   (B = {batch})")
    print(f"  dpooled (D = {g.size}) = dz back through the Dense layers (dx = dz @ W.T, times [z1 > 0] "
          "at the ReLU):")
    print(f"    {_vector(g * n)}")
    print(f"  every one of its n = {n} {'positions' if slices.mask is None else 'non-padding positions'} "
          f"sends the same slice g = dpooled / n:")
    print(f"    {_vector(g)}   |g| = {np.linalg.norm(g):.4e}")
    counted, counts = np.unique(positions, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:rows]
    print(f"  so embedding row r gets count x g from this review ({counted.size} distinct rows; "
          f"the {len(order)} most frequent):")
    for row, count in zip(counted[order], counts[order]):
        print(f"    {row:5d} {_piece(encoder, row)!r:18s} {count:4d} x g   "
              f"|{count} x g| = {count * np.linalg.norm(g):.4e}")
    if batch > 1:
        print("  (dE[r] for the batch adds these over its reviews: dE[r] = sum_b count[b, r] x g[b])")


def _print_norms(model, loss, grads, keras_loss, keras_grads) -> None:
    print("\ngradient norms (Keras order)" + (
        " - npembed / Keras / max |difference| / relative difference ||a - b|| / (||a|| + ||b||)"
        if keras_grads else ""))
    for name, grad, keras_grad in zip(model.weight_names, grads, keras_grads or [None] * len(grads)):
        line = f"  {name:24s} {str(grad.shape):12s} {np.linalg.norm(grad):.6e}"
        if keras_grad is not None:
            line += (f"  {np.linalg.norm(keras_grad):.6e}  {np.abs(grad - keras_grad).max():.2e}"
                     f"  {rel_error(grad, keras_grad):.1e}")
        print(line)
    if keras_loss is not None:
        print(f"  loss: npembed {loss:.8f}  Keras {keras_loss:.8f}  relative difference "
              f"{abs(loss - keras_loss) / max(abs(keras_loss), 1e-300):.1e}")


def _print_rows(model, dense_embedding_grad, encoder, rows: int) -> None:
    slices = model.layers[0].grads["embeddings"]
    counts = np.bincount(slices.indices, minlength=slices.dense_shape[0])
    touched = np.flatnonzero(counts)
    norms = np.linalg.norm(dense_embedding_grad, axis=1)
    order = touched[np.argsort(-norms[touched], kind="stable")][:rows]
    squared = slices.squared_sum()
    print(f"\nembedding rows touched: {touched.size} distinct of {slices.indices.size} slices "
          f"(a row looked up k times sums k slices); largest gradients.")
    print("  |dE row| is the norm of the summed slices (what both Kerases' m takes); |S row| of the")
    print("  summed squared slices, Keras 3's second-moment input (Keras 2 squares dE instead):")
    print(f"  {'id':>5}  {'subword':18s} {'slices':>6}  {'|dE row|':>11}  {'|S row|':>11}")
    for row in order:
        print(f"  {row:5d}  {_piece(encoder, row)!r:18s} {counts[row]:6d}  "
              f"{norms[row]:11.4e}  {np.linalg.norm(squared[row]):11.4e}")


def _print_finite_differences(model, ids, labels, per_weight: int = 4) -> None:
    print(f"\nfinite differences (float64 copy of the model, central, h=1e-5), up to {per_weight} "
          "distinct nonzero entries per weight:")
    check = npembed.Sequential(copy.deepcopy(model.layers), dtype="float64")     # same layers, float64
    check.set_weights(model.get_weights())
    check.compile(loss=model.loss)
    _, grads = check.compute_gradients(ids, labels)
    rng = np.random.default_rng(0)
    objective = lambda: check.loss(labels, check.forward(ids))  # noqa: E731
    for name, weight, grad in zip(check.weight_names, check.weights, grads):
        nonzero = np.argwhere(grad != 0)
        picked = nonzero[rng.choice(len(nonzero), min(per_weight, len(nonzero)), replace=False)] \
            if len(nonzero) else np.argwhere(np.ones_like(grad, dtype=bool))[:1]
        entries = [tuple(int(i) for i in entry) for entry in picked]
        numeric = numerical_gradient(objective, weight, entries)
        index = tuple(np.array(entries).T)
        pairs = ", ".join(f"{grad[e]:+.3e}/{numeric[e]:+.3e}" for e in entries)
        print(f"  {name:24s} rel_error {rel_error(grad[index], numeric[index]):.1e}  (analytic/numeric: {pairs})")


def _piece(encoder, row) -> str:
    """The subword of a row, or the hashed n-gram bucket it is (rows past the vocabulary)."""
    row = int(row)
    return encoder.id_to_piece(row) if row < encoder.vocab_size else f"<n-gram bucket {row - encoder.vocab_size}>"


def _vector(values: np.ndarray, shown: int = 8) -> str:
    text = np.array2string(values[:shown], precision=4, separator=" ", floatmode="fixed", sign="+",
                           max_line_width=10_000)
    return text[:-1] + " ...]" if values.size > shown else text


def _keras(model, ids, labels, args):
    if args.no_keras:
        return None, None
    from npembed import keras_twin
    if keras_twin.untwinned(model):
        print(f"(no Keras comparison: the Keras twin has no {', '.join(keras_twin.untwinned(model))}; "
              "the LSTM's parity with Keras is parity_tests/test_lstm_parity.py)")
        return None, None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")      # no INFO, WARNING or ERROR start-up lines
    try:
        with _stderr_kept_unless_failing():
            twin = keras_twin.build(model)
            loss, grads = keras_twin.gradients(twin, ids, labels)
            grads = [keras_twin.to_numpy(g) for g in grads]
    except ImportError:
        print("(TensorFlow is not installed: no Keras comparison; pip install 'npembed[tensorflow]')")
        return None, None
    return float(loss), grads


@contextlib.contextmanager
def _stderr_kept_unless_failing():
    """Hold what is written to file descriptor 2 (TensorFlow's C++ logging: a cuInit error on a
    machine without a GPU, oneDNN notices) and show it only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
