"""``npembed grads``: the gradients of one review or batch, laid out for someone checking them.

Prints the loss, each weight's gradient norm, the embedding rows the input touches (subword,
how many slices land on it, its gradient norm), a finite-difference check of a few entries per
weight (float64), and Keras's numbers beside npembed's when TensorFlow is installed.
"""
from __future__ import annotations

import numpy as np

import npembed
from npembed.errors import UsageError
from npembed.gradcheck import numerical_gradient, rel_error


def _inputs(args):
    """(ids (B, L), labels (B,), encoder, description)."""
    if args.run:
        from npembed.training import load_run
        model, _, encoder = load_run(args.run)
    else:
        model, encoder = None, None
    if args.text is not None:
        if encoder is None:
            from npembed.datasets import load_imdb_subwords8k
            encoder = load_imdb_subwords8k(args.data, progress=False).encoder
        ids = np.array([encoder.encode(args.text)])
        if ids.size == 0:
            raise UsageError("the text encodes to no subwords")
        label = 1 if args.label is None else args.label
        return model, ids, np.array([label]), encoder, f"the text {args.text[:60]!r} (label {label})"
    from npembed.datasets import load_imdb_subwords8k
    data = load_imdb_subwords8k(args.data, progress=False)
    if encoder is not None:
        from npembed.runfolder import check_vocabulary, vocabulary_checksum
        check_vocabulary(args.run, vocabulary_checksum(encoder.subwords), data.encoder, data.source.describe())
    encoder = encoder or data.encoder
    split = data.split(args.split)
    if args.batch is not None:
        batches = split.batches(10, 1000, seed=0)
        if not 0 <= args.batch < len(batches):
            raise UsageError(f"--batch must be in 0..{len(batches) - 1}")
        ids, labels = next(batches.for_epoch(0, start_step=args.batch))
        return model, ids, labels, encoder, f"batch {args.batch} of the tutorial's first epoch ({args.split})"
    index = 0 if args.index is None else args.index
    if not 0 <= index < len(split):
        raise UsageError(f"--index must be in 0..{len(split) - 1}")
    return (model, split.review(index)[None, :].astype(np.int64), split.labels[[index]], encoder,
            f"{args.split} review {index} ({split.keys[index]}, label {split.labels[index]})")


def gradients_report(args) -> None:
    model, ids, labels, encoder, description = _inputs(args)
    if model is None:
        model = npembed.tutorial_model(vocab_size=encoder.vocab_size, mask_zero=args.mask, seed=0)
        model.compile()
    print(f"input: {description}: {ids.shape[0]} review(s), padded length {ids.shape[1]}, "
          f"{np.count_nonzero(ids):,} tokens, {int((ids == 0).sum()):,} padding")
    loss, grads = model.compute_gradients(ids, labels)
    slices = model.layers[0].sparse_grads["embeddings"]
    print(f"loss: {loss:.6f}")
    keras_loss, keras_grads = _keras(model, ids, labels, args)

    print("\ngradient norms (Keras order)" + (" - npembed / Keras / max |difference|" if keras_grads else ""))
    for name, grad, keras_grad in zip(model.weight_names, grads, keras_grads or [None] * len(grads)):
        line = f"  {name:24s} {str(grad.shape):12s} {np.linalg.norm(grad):.6e}"
        if keras_grad is not None:
            line += f"  {np.linalg.norm(keras_grad):.6e}  {np.abs(grad - keras_grad).max():.2e}"
        print(line)
    if keras_loss is not None:
        print(f"  loss: npembed {loss:.8f}  Keras {keras_loss:.8f}")

    counts = np.bincount(slices.indices, minlength=slices.dense_shape[0])
    rows = np.flatnonzero(counts)
    order = rows[np.argsort(-np.linalg.norm(grads[0][rows], axis=1))][:args.rows]
    print(f"\nembedding rows touched: {rows.size} distinct of {ids.size} slices "
          f"(a row looked up k times sums k slices); largest gradients:")
    print(f"  {'id':>5}  {'subword':18s} {'slices':>6}  {'|grad row|':>11}  {'|sum slice^2|':>13}")
    squared = slices.squared_sum()
    for row in order:
        print(f"  {row:5d}  {encoder.id_to_piece(int(row))!r:18s} {counts[row]:6d}  "
              f"{np.linalg.norm(grads[0][row]):11.4e}  {np.linalg.norm(squared[row]):13.4e}")

    print("\nfinite differences (float64 copy of the model, central, h=1e-5), 4 entries per weight:")
    check = _float64_copy(model)
    check.set_weights(model.get_weights())
    _, check_grads = check.compute_gradients(ids, labels)
    rng = np.random.default_rng(0)
    objective = lambda: check.loss(labels, check.forward(ids))  # noqa: E731
    for name, weight, grad in zip(check.weight_names, check.weights, check_grads):
        if name.endswith("embeddings"):
            entries = [(int(r), int(c)) for r, c in zip(rng.choice(rows, 4), rng.integers(0, weight.shape[1], 4))]
        else:
            entries = [tuple(int(rng.integers(0, n)) for n in weight.shape) for _ in range(4)]
        numeric = numerical_gradient(objective, weight, entries)
        picked = tuple(np.array(entries).T)
        pairs = ", ".join(f"{grad[e]:+.3e}/{numeric[e]:+.3e}" for e in entries)
        print(f"  {name:24s} rel_error {rel_error(grad[picked], numeric[picked]):.1e}  (analytic/numeric: {pairs})")


def _float64_copy(model):
    from npembed.layers import Dense, Embedding, GlobalAveragePooling1D
    layers = []
    for layer in model.layers:
        if isinstance(layer, Embedding):
            layers.append(Embedding(layer.input_dim, layer.output_dim, mask_zero=layer.mask_zero))
        elif isinstance(layer, GlobalAveragePooling1D):
            layers.append(GlobalAveragePooling1D())
        else:
            layers.append(Dense(layer.units, activation=layer.activation))
    copy = npembed.Sequential(layers, seed=0, dtype="float64")
    copy.compile()
    return copy


def _keras(model, ids, labels, args):
    if args.no_keras:
        return None, None
    try:
        from npembed import keras_twin
        twin = keras_twin.build(model)
    except ImportError:
        print("(TensorFlow is not installed: no Keras comparison; pip install 'npembed[tensorflow]')")
        return None, None
    loss, grads = keras_twin.gradients(twin, ids, labels)
    return float(loss), [keras_twin.to_numpy(g) for g in grads]
