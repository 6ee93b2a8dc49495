"""Print the measured npembed-vs-Keras differences, for both Kerases, as Markdown tables.

    python -m parity_tests.report                 # oneDNN as TensorFlow defaults (on)
    python -m parity_tests.report --onednn both   # the tables with oneDNN on, then off
    python -m parity_tests.report --full          # every (Keras, dtype, mask, weights) row

Same weights, the first real batches of the tutorial's pipeline (seed 0), masked and unmasked,
float32 and float64, fresh weights and the weights after the tutorial's 10 epochs, against Keras
3 and tf_keras (each with its npembed Adam).  For each quantity: the largest |npembed - Keras|,
that over the largest |Keras| (normwise), and "bound used": the largest ratio of
|npembed - Keras| to the allowed 2 B of parity_tests/bounds.py (the tests fail above 1).
docs/parity.md holds the tables.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

BATCHES = 10
TRAJECTORY = 200


class Worst:
    """The largest difference, relative difference and bound usage seen per quantity."""

    def __init__(self):
        self.rows: dict[str, list[float]] = {}

    def record(self, name, ours, theirs, bound=None):
        ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
        difference = np.abs(ours - theirs)
        scale = float(np.max(np.abs(theirs))) or 1.0
        used = float(np.max(difference / (2 * np.asarray(bound)))) if bound is not None else float("nan")
        old = self.rows.get(name, [0.0, 0.0, 0.0])
        self.rows[name] = [max(old[0], float(difference.max())), max(old[1], float(difference.max()) / scale),
                           max(old[2], used) if bound is not None else float("nan")]


def trained(imdb, mask_zero):
    import npembed
    model = npembed.tutorial_model(seed=0, mask_zero=mask_zero)
    model.compile()
    model.fit(imdb.train.batches(10, shuffle_buffer=1000, seed=5), epochs=10, verbose=0)
    return model.get_weights(), model.optimizer.state()


def one_step_rows(imdb, batches, flavor, dtype, mask_zero, start) -> Worst:
    """Forward, loss, gradients and Adam steps, each step from Keras's state."""
    import npembed
    from npembed import keras_twin
    from parity_tests import bounds
    worst = Worst()
    np_model = npembed.tutorial_model(seed=0, mask_zero=mask_zero, dtype=dtype)
    np_model.compile(optimizer=npembed.optimizers.Adam(variant=keras_twin.ADAM_VARIANT[flavor]))
    if start is not None:
        np_model.set_weights(start[0])
    twin = keras_twin.build(np_model, flavor)
    optimizer = keras_twin.adam(twin)
    adam = np_model.optimizer
    adam.build(np_model.weights)
    if start is not None:
        state = {key: value.astype(dtype) if isinstance(value, np.ndarray) else value
                 for key, value in start[1].items()}
        adam.load_state(state, np_model.weights)
        optimizer.build(twin.trainable_variables)
        optimizer.iterations.assign(state["iterations"])
        for variables, values in ((optimizer._momentums, adam.momentums), (optimizer._velocities, adam.velocities)):
            for variable, value in zip(variables, values):
                variable.assign(value)
    u = bounds.unit_roundoff(dtype)
    for ids, labels in batches[:BATCHES]:
        bound = bounds.model_bounds(np_model, ids, labels, dtype)
        outputs = keras_twin.forward(twin, ids)
        for layer in np_model.layers[1:]:
            worst.record(f"forward {layer.name} (chained)", _chained(np_model, ids, layer.name),
                         outputs[layer.name], bound.outputs[layer.name].error)
        keras_loss, keras_grads = keras_twin.gradients(twin, ids, labels)
        loss, grads = np_model.compute_gradients(ids, labels)
        worst.record("loss", loss, keras_loss, bound.loss.error)
        for name, grad, keras_grad, grad_bound in zip(np_model.weight_names, grads, keras_grads, bound.grads):
            worst.record(f"gradient {name}", grad, keras_twin.to_numpy(keras_grad), grad_bound.error)
        worst.record("IndexedSlices values", np_model.layers[0].grads["embeddings"].values,
                     keras_grads[0].values.numpy(), bound.slices.error)
        before = [w.astype(np.float64) for w in np_model.get_weights()]
        m_before = [m.astype(np.float64) for m in adam.momentums]
        v_before = [v.astype(np.float64) for v in adam.velocities]
        t = adam.iterations + 1
        constants = (float(adam.step_size(np.dtype(dtype))), 1 - adam.beta_1, 1 - adam.beta_2, adam.epsilon,
                     float(np.float32(adam.beta_1)) ** t, float(np.float32(adam.beta_2)) ** t, dtype)
        optimizer.apply_gradients(zip(keras_grads, twin.trainable_variables))
        np_model.train_on_batch(ids, labels)
        keras_m, keras_v = keras_twin.adam_slots(optimizer)
        keras_weights = twin.get_weights()
        for index, name in enumerate(np_model.weight_names):
            squared = (bound.squared if index == 0 and flavor == "keras3" else bounds.square(bound.grads[index], u))
            step = bounds.adam_step_bounds(before[index], m_before[index], v_before[index], bound.grads[index],
                                           squared, *constants)
            worst.record(f"Adam step: {name}", np_model.weights[index], keras_weights[index], step.weight.error)
            worst.record("Adam m (every weight)", adam.momentums[index], keras_m[index], step.m.error)
            worst.record("Adam v (every weight)", adam.velocities[index], keras_v[index], step.v.error)
        np_model.set_weights(keras_weights)
        adam.momentums = [m.copy() for m in keras_m]
        adam.velocities = [v.copy() for v in keras_v]
    return worst


def _chained(np_model, ids, name):
    """npembed's own forward pass up to layer ``name``."""
    x, mask = ids, None
    for layer in np_model.layers:
        out = layer.forward(x, mask)
        mask, x = layer.compute_mask(x, mask), out
        if layer.name == name:
            return out
    raise KeyError(name)


def trajectory_rows(batches, flavor, mask_zero) -> Worst:
    import npembed
    from npembed import keras_twin
    worst = Worst()
    np_model = npembed.tutorial_model(seed=1, mask_zero=mask_zero, dtype="float64")
    np_model.compile(optimizer=npembed.optimizers.Adam(variant=keras_twin.ADAM_VARIANT[flavor]))
    twin = keras_twin.build(np_model, flavor)
    twin.compile(optimizer=keras_twin.adam(twin), loss=keras_twin.loss_function(twin))
    np_losses, keras_losses = [], []
    for ids, labels in batches[:TRAJECTORY]:
        keras_losses.append(float(twin.train_on_batch(ids, labels.astype("float64"))))
        np_losses.append(np_model.train_on_batch(ids, labels))
    worst.record(f"{TRAJECTORY}-step trajectory: every loss", np_losses, keras_losses)
    worst.record(f"{TRAJECTORY}-step trajectory: final weights", np.concatenate([w.ravel() for w in np_model.weights]),
                 np.concatenate([w.ravel() for w in twin.get_weights()]))
    return worst


def measure(imdb) -> list[tuple]:
    from npembed import keras_twin
    batches = list(imdb.train.batches(10, 1000, seed=0).for_epoch(0))[:TRAJECTORY]
    starts = {mask: trained(imdb, mask) for mask in (False, True)}
    rows = []
    for flavor in keras_twin.FLAVORS:
        for dtype in ("float32", "float64"):
            for f in keras_twin.FLAVORS:
                keras_twin.set_floatx(f, dtype)
            for mask in (False, True):
                for kind in ("fresh", "trained"):
                    worst = one_step_rows(imdb, batches, flavor, dtype, mask, starts[mask] if kind == "trained" else None)
                    rows += [(flavor, dtype, "masked" if mask else "unmasked", kind, name, *values)
                             for name, values in worst.rows.items()]
                if dtype == "float64":
                    worst = trajectory_rows(batches, flavor, mask)
                    rows += [(flavor, dtype, "masked" if mask else "unmasked", "fresh", name, *values)
                             for name, values in worst.rows.items()]
        for f in keras_twin.FLAVORS:
            keras_twin.set_floatx(f, "float32")
    return rows


def table(rows, title) -> str:
    """Every row: Keras, dtype, mask, weights, quantity."""
    lines = [f"#### {title}", "", "| Keras | dtype | mask | weights | quantity | max abs | max rel | bound used |",
             "|---|---|---|---|---|---|---|---|"]
    for flavor, dtype, mask, kind, name, absolute, relative, used in rows:
        used_text = "-" if np.isnan(used) else f"{used:.2g}"
        lines.append(f"| {flavor} | {dtype} | {mask} | {kind} | {name} | {absolute:.1e} | {relative:.1e} | {used_text} |")
    return "\n".join(lines)


def compact(rows, title) -> str:
    """One row per quantity, one column per (Keras, dtype): the largest relative difference and
    the largest share of the bound used, over masked/unmasked and fresh/trained weights."""
    columns = [(flavor, dtype) for flavor in ("keras3", "tf_keras") for dtype in ("float32", "float64")]
    cells: dict[tuple, list[float]] = {}
    names: list[str] = []
    for flavor, dtype, _, _, name, _, relative, used in rows:
        if name not in names:
            names.append(name)
        old = cells.get((name, flavor, dtype), [0.0, float("nan")])
        cells[name, flavor, dtype] = [max(old[0], relative), np.fmax(old[1], used)]
    lines = [f"#### {title}", "", "max relative difference / largest share of the error bound used "
             "(masked and unmasked, fresh and trained weights)", "",
             "| quantity | " + " | ".join(f"{flavor} {dtype}" for flavor, dtype in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name in names:
        texts = []
        for flavor, dtype in columns:
            if (name, flavor, dtype) not in cells:
                texts.append("")
                continue
            relative, used = cells[name, flavor, dtype]
            texts.append(f"{relative:.1e}" + ("" if np.isnan(used) else f" / {used:.2f}"))
        lines.append(f"| {name} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onednn", choices=["default", "on", "off", "both"], default="default")
    parser.add_argument("--data", default=None)
    parser.add_argument("--full", action="store_true", help="every row, not one per quantity")
    args = parser.parse_args()
    if args.onednn == "both":
        for setting in ("on", "off"):
            subprocess.run([sys.executable, "-m", "parity_tests.report", "--onednn", setting,
                            *(["--data", args.data] if args.data else []), *(["--full"] if args.full else [])],
                           check=True)
        return
    if args.onednn in ("on", "off"):
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from npembed.datasets import load_imdb_subwords8k
    imdb = load_imdb_subwords8k(args.data, progress=False)
    rows = measure(imdb)
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    title = (f"TensorFlow {tf.__version__}, TF_ENABLE_ONEDNN_OPTS={setting}, {BATCHES} real batches, one "
             f"step at a time (float64 trajectory: {TRAJECTORY} steps)")
    print((table if args.full else compact)(rows, title))
    print()


if __name__ == "__main__":
    main()
