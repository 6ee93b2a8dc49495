"""``python -m benchmarks.adam_variants``: why Keras 3 trains the tutorial's model slower.

The two Kerases differ in one number per embedding row and step, the second moment's input S:
for a row looked up k times with slices s_1 .. s_k,

    keras2 (tf.keras, the tutorial's):  S = (s_1 + ... + s_k)**2
    keras3 (Keras 3):                   S = s_1**2 + ... + s_k**2

This measures, on the real data and the tutorial's settings:

1. S3 / S2 row by row on real batches, at fresh weights and after the tutorial's 10 epochs:
   rows seen once (equal), rows repeated with agreeing slices (a subword repeated within one
   review: S3 = S2 / k), and the padding row, which collects one slice per padding position of
   every review of the batch (thousands), from positive and negative reviews;
2. the first Adam step of each kind of row under each Adam (keras2's step is lr * sign(g) for
   every row; keras3's is lr * |g| / sqrt(S3));
3. the training curve (10 epochs, the tutorial's pipeline and seed) of keras2 and keras3, of
   each with the *other's* S on the padding row only, and of both with the mask on (no padding
   row gradient at all): which row's S the slowdown comes from.

Writes benchmarks/results/adam_variants.json and prints the Markdown of the tables in
docs/gradients_appendix.md.  About a minute and a half on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import npembed
from npembed import kernels
from npembed.config import TUTORIAL_LOSS
from npembed.optimizers import Adam

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "adam_variants.json"


class PaddingRowSwapped(Adam):
    """``variant``'s Adam everywhere except the padding row (row 0), whose second-moment input
    is the other Kerases' (a measuring device, not a training option)."""

    def _update(self, index, weight, grad, *constants):
        if isinstance(grad, np.ndarray):
            return super()._update(index, weight, grad, *constants)
        rows, summed, squared_slices = grad.row_sums()
        summed = summed.astype(weight.dtype, copy=False)
        squared = (np.square(summed) if self.variant == "keras2" else squared_slices.astype(weight.dtype))
        other = (squared_slices.astype(weight.dtype) if self.variant == "keras2" else np.square(summed))
        padding = rows == 0
        squared[padding] = other[padding]
        kernels.adam_update_rows(weight, self.momentums[index], self.velocities[index], rows, summed,
                                 squared, *constants)


def row_ratios(data, model, batches: int = 50) -> dict:
    """S3 / S2 for each looked-up row of the first ``batches`` real batches, by kind of row, at
    ``model``'s weights (its gradients in float64)."""
    weights = model.get_weights()
    model = npembed.tutorial_model(seed=0, dtype="float64")
    model.set_weights([w.astype(np.float64) for w in weights])
    kinds: dict[str, list[float]] = {"padding row": [], "seen once in the batch": [],
                                     "repeated within one review": []}
    steps: dict[str, list[list[float]]] = {name: [] for name in kinds}
    iterator = iter(data.train.batches(10, shuffle_buffer=1000, seed=0).for_epoch(0))
    for _ in range(batches):
        ids, labels = next(iterator)
        model.compute_gradients(ids, labels)
        slices = model.layers[0].grads["embeddings"]
        rows, summed, squared = slices.row_sums()
        ratio = (squared / np.maximum(np.square(summed), 1e-300)).mean(axis=1)
        per_review = np.array([[np.count_nonzero(review == row) for row in rows] for review in ids])
        # one Adam step from zero moments: keras2 moves lr * sign(g); keras3 lr * |g| / sqrt(S3)
        keras3_step = (np.abs(summed) / np.sqrt(squared)).mean(axis=1)
        for position, row in enumerate(rows):
            if row == 0:
                kind = "padding row"
            elif per_review[:, position].sum() == 1:
                kind = "seen once in the batch"
            elif per_review[:, position].max() == per_review[:, position].sum():
                kind = "repeated within one review"
            else:
                continue                                    # in several reviews: a mix of both
            kinds[kind].append(float(ratio[position]))
            steps[kind].append([1.0, float(keras3_step[position])])
    return {kind: {"rows": len(values), "median S3/S2": float(np.median(values)),
                   "median keras3 step / keras2 step": float(np.median([s[1] for s in steps[kind]]))}
            for kind, values in kinds.items()}


def curve(data, variant: str, mask: bool, swapped: bool, epochs: int) -> dict:
    model = npembed.tutorial_model(seed=0, mask_zero=mask)
    optimizer = (PaddingRowSwapped if swapped else Adam)(variant=variant)
    model.compile(optimizer=optimizer, metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(data.train.batches(10, shuffle_buffer=1000, seed=0), epochs=epochs, verbose=0)
    table = model.get_weights()[0]
    return model, {"variant": variant, "mask": mask, "padding row swapped": swapped,
            "loss": [round(x, 4) for x in history.history["loss"]],
            "padding row norm": float(np.linalg.norm(table[0])),
            "mean row norm": float(np.linalg.norm(table[1:], axis=1).mean()),
            "seconds": round(time.perf_counter() - start, 1)}


def markdown(results: dict) -> str:
    lines = ["| weights | row | rows | median S3 / S2 | keras3's first step / keras2's |", "|---|---|---|---|---|"]
    for weights, label in (("fresh", "fresh"), ("trained", "after 10 epochs (keras2)")):
        for kind, row in results["rows"][weights].items():
            lines.append(f"| {label} | {kind} | {row['rows']:,} | {row['median S3/S2']:.3g} | "
                         f"{row['median keras3 step / keras2 step']:.3g} |")
    lines += ["", "| Adam | mask | padding row's S | loss after epoch 1 | after epoch 10 | "
              "|padding row| after 10 |", "|---|---|---|---|---|---|"]
    lines.append(f"| the tutorial (TF 2.1 tf.keras) | no | - | {TUTORIAL_LOSS[0]:.4f} | {TUTORIAL_LOSS[-1]:.4f} | - |")
    for run in results["curves"]:
        own = run["variant"]
        other = "keras3" if own == "keras2" else "keras2"
        padding = "none (masked)" if run["mask"] else (other + "'s" if run["padding row swapped"] else own + "'s")
        lines.append(f"| {own} | {'yes' if run['mask'] else 'no'} | {padding} | {run['loss'][0]:.4f} | "
                     f"{run['loss'][-1]:.4f} | {run['padding row norm']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="default $NPEMBED_DATA")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    from npembed.datasets import load_imdb_subwords8k
    data = load_imdb_subwords8k(args.data, progress=False)
    results = {"rows": {"fresh": row_ratios(data, npembed.tutorial_model(seed=0))}, "curves": []}
    for variant, mask, swapped in [("keras2", False, False), ("keras3", False, False),
                                   ("keras2", False, True), ("keras3", False, True),
                                   ("keras2", True, False), ("keras3", True, False)]:
        model, run = curve(data, variant, mask, swapped, args.epochs)
        results["curves"].append(run)
        if (variant, mask, swapped) == ("keras2", False, False):
            results["rows"]["trained"] = row_ratios(data, model)
        print(run, flush=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
