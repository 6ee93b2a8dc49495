"""Print the measured npembed-vs-Keras differences, per quantity, as a Markdown table.

    python -m parity_tests.report                 # oneDNN as TensorFlow defaults (on)
    python -m parity_tests.report --onednn both   # one table with oneDNN on, one with it off

Same weights, the first batches of the tutorial's pipeline (seed 0), masked and unmasked,
float32 and float64.  "max abs" is the largest |npembed - Keras| over the batches; "max rel" is
that divided by the largest |Keras| of the quantity (normwise).  docs/parity.md holds the table.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

BATCHES = 20
TRAJECTORY = 200


def measure(imdb) -> list[tuple]:
    import keras

    import npembed
    from npembed import keras_twin
    batches = list(imdb.train.batches(10, 1000, seed=0).for_epoch(0))[:TRAJECTORY]
    rows = []
    for dtype in ("float32", "float64"):
        keras.config.set_floatx(dtype)
        for mask in (False, True):
            worst: dict[str, list[float]] = {}

            def record(name, ours, theirs):
                ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
                diff = float(np.max(np.abs(ours - theirs)))
                scale = float(np.max(np.abs(theirs))) or 1.0
                old = worst.get(name, [0.0, 0.0])
                worst[name] = [max(old[0], diff), max(old[1], diff / scale)]

            np_model = npembed.tutorial_model(seed=0, mask_zero=mask, dtype=dtype)
            twin = keras_twin.build(np_model)
            np_model.compile()
            optimizer = keras.optimizers.Adam()
            for ids, labels in batches[:BATCHES]:
                outputs = keras_twin.forward(twin, ids)
                np_model.forward(ids)
                layer_input, layer_mask = ids, None
                for layer in np_model.layers:
                    record(f"forward {layer.name} (layer-wise)", layer.forward(layer_input, layer_mask), outputs[layer.name])
                    layer_mask = layer.compute_mask(layer_input, layer_mask)
                    layer_input = outputs[layer.name]
                keras_loss, keras_grads = keras_twin.gradients(twin, ids, labels)
                loss, grads = np_model.compute_gradients(ids, labels)
                record("loss", loss, keras_loss)
                for name, grad, keras_grad in zip(np_model.weight_names, grads, keras_grads):
                    record(f"grad {name}", grad, keras_twin.to_numpy(keras_grad))
                record("grad embeddings, IndexedSlices values", np_model.layers[0].sparse_grads["embeddings"].values,
                       keras_grads[0].values.numpy())
                optimizer.apply_gradients(zip(keras_grads, twin.trainable_variables))
                np_model.optimizer.apply_gradients(np_model.trainable_gradients(), np_model.weights)
                for name, w, kw in zip(np_model.weight_names, np_model.weights, twin.get_weights()):
                    record(f"Adam step: {name}", w, kw)
                keras_m, keras_v = keras_twin.adam_slots(optimizer)
                record("Adam m (all weights)", np.concatenate([m.ravel() for m in np_model.optimizer.momentums]),
                       np.concatenate([m.ravel() for m in keras_m]))
                record("Adam v (all weights)", np.concatenate([v.ravel() for v in np_model.optimizer.velocities]),
                       np.concatenate([v.ravel() for v in keras_v]))
                np_model.set_weights(twin.get_weights())        # next step from Keras's state
                np_model.optimizer.momentums = [m.copy() for m in keras_m]
                np_model.optimizer.velocities = [v.copy() for v in keras_v]
            if dtype == "float64":
                np_model = npembed.tutorial_model(seed=1, mask_zero=mask, dtype=dtype)
                twin = keras_twin.build(np_model)
                np_model.compile()
                twin.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.BinaryCrossentropy(from_logits=True))
                np_losses, keras_losses = [], []
                for ids, labels in batches:
                    keras_losses.append(float(twin.train_on_batch(ids, labels.astype(dtype))))
                    np_losses.append(np_model.train_on_batch(ids, labels))
                record(f"{TRAJECTORY}-step trajectory: every loss", np_losses, keras_losses)
                record(f"{TRAJECTORY}-step trajectory: final weights",
                       np.concatenate([w.ravel() for w in np_model.weights]),
                       np.concatenate([w.ravel() for w in twin.get_weights()]))
            for name, (absolute, relative) in worst.items():
                rows.append((dtype, "masked" if mask else "unmasked", name, absolute, relative))
        keras.config.set_floatx("float32")
    return rows


def table(rows, title) -> str:
    lines = [f"#### {title}", "", "| dtype | mask | quantity | max abs | max rel |", "|---|---|---|---|---|"]
    lines += [f"| {d} | {m} | {q} | {a:.1e} | {r:.1e} |" for d, m, q, a, r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onednn", choices=["default", "on", "off", "both"], default="default")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    if args.onednn == "both":
        for setting in ("on", "off"):
            subprocess.run([sys.executable, "-m", "parity_tests.report", "--onednn", setting,
                            *(["--data", args.data] if args.data else [])], check=True)
        return
    if args.onednn in ("on", "off"):
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from npembed.datasets import load_imdb_subwords8k
    imdb = load_imdb_subwords8k(args.data, progress=False)
    rows = measure(imdb)
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    print(table(rows, f"TensorFlow {tf.__version__}, TF_ENABLE_ONEDNN_OPTS={setting}, {BATCHES} real "
                      f"batches per row, one step at a time (float64 trajectory: {TRAJECTORY} steps)"))
    print()


if __name__ == "__main__":
    main()
