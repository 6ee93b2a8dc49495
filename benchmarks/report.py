"""Tables (Markdown) and charts (matplotlib) from a results JSON."""
from __future__ import annotations

from pathlib import Path

from npembed.atomic import atomic_write_text

SHORT = {"npembed": "npembed", "keras": "Keras", "keras_jit": "Keras (XLA)", "torch": "PyTorch", "jax": "JAX jit",
         "npembed_lazy": "npembed, lazy Adam"}
NAMES = {"npembed": "npembed (Keras 3's Adam)", "keras": "Keras fit", "keras_jit": "Keras fit, jit_compile=True",
         "torch": "PyTorch eager", "jax": "JAX jax.jit + optax Adam (padded to multiples of 256)",
         "npembed_lazy": "npembed, lazy Adam"}


def markdown_tables(results: dict) -> str:
    w = results["workload"]
    lines = [f"Training: {w['train_steps']:,} steps of batch 10 ({w['train_tokens']:,} tokens); "
             f"prediction: {w['predict_reviews']:,} reviews.", "",
             "| framework | epoch s (median) | min - max | ms/step | tokens/s | predict s | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in results["frameworks"].items():
        e = entry["epoch_seconds"]
        predict = f"{entry['predict_seconds']['median']:.2f}" if "predict_seconds" in entry else "-"
        label = NAMES.get(name, name)
        if entry.get("steps_timed", w["train_steps"]) < w["train_steps"]:
            label += (f" (timed on {entry['steps_timed']} steps after a compiling pass of "
                      f"{entry['warmup_epoch_seconds'][0]:.0f} s; epoch extrapolated)")
        lines.append(f"| {label} | {e['median']:.2f} | {e['min']:.2f} - {e['max']:.2f} | "
                     f"{entry['ms_per_step']:.3f} | {entry['tokens_per_second']:,.0f} | {predict} | "
                     f"{entry['train_peak_rss_mb']:.0f} |")
    lines += ["", "| ratio | training epoch | prediction | peak RSS |", "|---|---|---|---|"]
    for name, ratio in results["ratios"].items():
        predict = f"{ratio['predict']:.3f}x" if ratio["predict"] is not None else "-"
        lines.append(f"| {name} | {ratio['train_epoch']:.3f}x | {predict} | {ratio['train_peak_rss']:.3f}x |")
    floor = results["floor"]
    lines += ["", f"Floor: {floor['bytes_per_step'] / 1e6:.2f} MB of memory traffic per step at "
                  f"{floor['copy_bandwidth_gb_s']:.1f} GB/s copy bandwidth = {floor['floor_ms_per_step']:.3f} ms/step; "
                  f"npembed: {results['frameworks']['npembed']['ms_per_step']:.3f} ms/step "
                  f"({results['frameworks']['npembed']['ms_per_step'] / floor['floor_ms_per_step']:.1f}x the floor)."]
    if results.get("sweeps"):
        lines += ["", "| sweep | point | " + " | ".join(NAMES.get(f, f) for f in results["sweeps"]) + " |",
                  "|---|---|" + "---|" * len(results["sweeps"])]
        rows: dict = {}
        for framework, points in results["sweeps"].items():
            for p in points:
                key = (p.get("sweep", "base"), f"V={p['vocab']:,} D={p['dim']} B={p['batch']} L={p['length']}")
                rows.setdefault(key, {})[framework] = p["ms_per_step"]
        for (sweep, point), values in rows.items():
            cells = [f"{values[f]:.3f}" if f in values else "" for f in results["sweeps"]]
            lines.append(f"| {sweep} | {point} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_charts(results: dict, folder: Path) -> None:
    from npembed.plots import _pyplot
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "epoch_seconds", "Training epoch (2,500 steps), s"),
                           (axes[1], "predict_seconds", "Predicting 25,000 reviews, s")):
        names = [n for n in results["frameworks"] if key in results["frameworks"][n]]
        medians = [results["frameworks"][n][key]["median"] for n in names]
        ax.barh([SHORT.get(n, n) for n in names], medians, color=["C2" if n == "npembed" else "C0" for n in names])
        for i, value in enumerate(medians):
            ax.text(value, i, f" {value:.2f}", va="center")
        ax.set_title(title)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(folder / "bench_epoch.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    sweeps = {s: [] for s in ("vocab", "dim", "batch", "length")}
    for framework, points in results.get("sweeps", {}).items():
        for p in points:
            if p.get("sweep") in sweeps:
                sweeps[p["sweep"]].append((framework, p[p["sweep"]], p["ms_per_step"]))
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    labels = {"vocab": "vocabulary size", "dim": "embedding dimension", "batch": "batch size", "length": "review length"}
    for ax, (sweep, entries) in zip(axes, sweeps.items()):
        for framework in dict.fromkeys(f for f, _, _ in entries):
            xs = [x for f, x, _ in entries if f == framework]
            ys = [y for f, _, y in entries if f == framework]
            ax.plot(xs, ys, "o-", label=SHORT.get(framework, framework))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(labels[sweep])
        ax.set_ylabel("ms per training step")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "bench_sweeps.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def _lazy(results: dict) -> tuple[float, float]:
    points = {p["vocab"]: p["ms_per_step"] for p in results.get("sweeps", {}).get("npembed_lazy", [])}
    return points.get(8185, float("nan")), points.get(1_000_000, float("nan"))


def _sweep_point(results: dict, framework: str, sweep: str, value) -> float:
    for p in results.get("sweeps", {}).get(framework, []):
        if p.get("sweep") == sweep and p[sweep] == value:
            return p["ms_per_step"]
    return float("nan")


def _breakdown(entry: dict) -> str:
    parts = dict(entry.get("step_breakdown_us", {}))
    backend = parts.pop("kernel backend", "?")
    if not parts:
        return "(this run recorded no breakdown)"
    rows = [f"| {name} | {us:.0f} |" for name, us in parts.items()]
    return "\n".join([f"| part of one step ({backend} kernels) | microseconds |", "|---|---|", *rows,
                      f"| total | {sum(parts.values()):.0f} |"])


def _jax_clause(frameworks: dict) -> str:
    if "jax" not in frameworks:
        return " (and JAX, in runs since 2026-12-08; the run below predates it)"
    return (" and JAX (`jax.jit` over one step with optax's Adam; batches padded to multiples of 256 so "
            "that XLA compiles at most 16 shapes, the average still taken over each batch's own padded length)")


def docs_page(results: dict) -> str:
    """docs/benchmarks.md from a full run's results (``python -m benchmarks.report``)."""
    m, r, f = results["machine"], results["ratios"], results["frameworks"]
    small, large = _lazy(results)
    batch_npembed, batch_torch = (_sweep_point(results, name, "batch", 512) for name in ("npembed", "torch"))
    met = lambda ok: "met" if ok else "not met"  # noqa: E731
    train_keras, train_torch = r["npembed/keras"]["train_epoch"], r["npembed/torch"]["train_epoch"]
    predict, memory = 1 / r["npembed/keras"]["predict"], r["npembed/keras"]["train_peak_rss"]
    return f"""# Benchmarks

`python -m benchmarks` (or `make bench`, which first installs PyTorch 2.13.0 CPU, JAX and optax
from the `bench` extra) times npembed, Keras `fit`, Keras `fit` with `jit_compile=True`, PyTorch
eager{_jax_clause(f)} on
**the same prebuilt batches**: the tutorial's epoch, 2,500 steps of batch 10 from
`shuffle(1000).padded_batch(10)` over the real train reviews (seed 0), padded per batch, and the
25,000 test reviews in batches of 10 for prediction. Each framework runs in its own process
(`benchmarks/worker.py`), which loads only the batches it times and builds them before its clock
starts (Keras reads them through a native tf.data pipeline made from the same arrays, one ragged
tensor batched and padded per batch, the shapes of `padded_batch`; PyTorch from tensors converted
once); one warm-up epoch, then {f["npembed"]["epoch_seconds"]["n"]} timed epochs (median, min, max). The models are the
same: `Embedding(8185, 16) -> mean -> Dense(16, relu) -> Dense(1)`, sigmoid cross-entropy, Adam
(lr 1e-3, epsilon 1e-7) with dense updates of every row, accuracy tracked during training.
`python -m benchmarks --quick` is the smoke run that `make test` executes
(`tests/test_benchmarks_smoke.py`); it asserts that everything runs, never a speed. This page is
written from the results by `python -m benchmarks.report benchmarks/results/latest.json`.

## Results

Measured {results["date"][:10]} with `{results["command"]}` on this project's machine: {m["cpu"]}, {m["cores"]} cores
(shared, so timings carry noise of 10-30% between runs; every ratio below comes from one run),
Python {m["python"]}, NumPy {m["numpy"]}, TensorFlow {m["tensorflow"]}, Keras {m["keras"]}, PyTorch {m["torch"]};
npembed kernels: {m.get("npembed_kernels", "numpy")}; OPENBLAS_CORETYPE={m["OPENBLAS_CORETYPE"]}.
Raw numbers: `benchmarks/results/latest.json`.

![epoch and prediction times](images/bench_epoch.png)

{markdown_tables(results)}

![scaling sweeps](images/bench_sweeps.png)

## Reading the numbers

**Where npembed's step goes.** Timed part by part over one more epoch, in the same worker:

{_breakdown(f["npembed"])}

The embedding's forward and backward and Adam's pass over the table run in C
(`npembed/csrc/`, see `docs/architecture.md`): Keras-exact Adam moves every one of the 131,249
parameters every step, one loop over w, m and v. The rest is NumPy on (10, 16) arrays and Python:
the two dense layers, the loss, the optimizer's bookkeeping, a few dozen calls of a few
microseconds each. The floor line counts the memory traffic a step cannot avoid (read and write
w, m and v for every parameter, and read one embedding row per token) at the copy bandwidth
NumPy reaches for a working set of this size; the set fits in cache, hence the high figure.
With the NumPy kernels (`NPEMBED_KERNELS=numpy`) the same epoch takes about twice as long.

**Keras `fit` sometimes has slow epochs.** In six of the eight runs of its worker made on
2026-11-24, one to three of its epochs took about 10.2 s instead of 5 to 6 s, with either input pipeline (a
Python generator, or the native one now used); npembed's and PyTorch's epochs varied by a few
percent. The tables give medians, and the min column shows Keras's fast epochs.

**Keras with XLA** compiles one program per distinct batch shape. A padded epoch has about 1,500
shapes and each compilation takes about half a second here, so the first epoch takes minutes. It
is therefore timed on the first 300 batches, repeated after one compiling pass, and scaled to the
epoch (marked in the table). Once compiled, it is about as fast as plain `fit` on this model.

**Sweeps** use synthetic Zipf-distributed ids (identical in every process), 200 steps per point,
best of 2. Every Keras-exact optimizer touches the whole table each step, so step cost grows
linearly with vocabulary size and embedding width for all three frameworks. npembed's step works
from each review's distinct rows, so it grows slowly with the batch: {batch_npembed:.2f} ms at batch 512
against PyTorch's {batch_torch:.2f} ms.

**Lazy Adam** (`Adam(variant="lazy")`, not Keras-exact: rows outside the batch stay frozen) costs
{small:.3f} ms per step at 8,185 x 16 and {large:.3f} ms at 1,000,000 x 64 ({large / small:.2f}x), the two points built in
one process and timed in turn, seven rounds, medians. Its cost follows the rows in the batch and
their width (four times more floats per row at 64), not the vocabulary; at a million rows each
looked-up row of w, m and v is a cache miss, which the C loops prefetch a few rows ahead.

## Against the targets

| target | measured | |
|---|---|---|
| training epoch <= 0.10x Keras `fit` | {train_keras:.3f}x | {met(train_keras <= 0.10)} |
| training epoch <= 0.25x PyTorch eager | {train_torch:.3f}x | {met(train_torch <= 0.25)} |
| prediction >= 10x faster than Keras `predict` | {predict:.1f}x faster | {met(predict >= 10)} |
| peak memory of training <= 1/4 of Keras's | {memory:.3f}x | {met(memory <= 0.25)} |
| lazy Adam at 1M x 64 within 2x of 8,185 x 16 | {large / small:.2f}x | {met(large / small <= 2)} |

Against Keras's fastest epoch instead of its median, npembed's epoch is
{f["npembed"]["epoch_seconds"]["median"] / f["keras"]["epoch_seconds"]["min"]:.3f}x. The lazy-Adam ratio has a thin margin: five runs of the same
interleaved measurement on the final code (this one, and four runs of `benchmarks.worker` with
the two lazy points and `"interleave": true`) gave 1.89x to 1.93x; before the last change to
the row sums (`csrc/embedding.c`, two calls and direct writes for rows held by one review) six runs gave
1.94x to 2.05x. At a million rows the step is bound by memory latency:
each looked-up row of w, m and v is a separate cache miss (three per row, 256 bytes each at
width 64). Keeping a row's m and v side by side in one (V, 2, D) array was tried: a standalone C
loop over 700 random rows went from 70 to 54 us, but the whole step only from 0.250 to 0.248 ms
(and 0.243 to 0.238 ms in a second run, both variants timed in turn in one process), so the
simpler layout stayed.

## Memory

Peak resident memory is `VmHWM` of each worker process. It is not `getrusage`'s figure, which
Linux carries across fork and exec. Each process holds the same batches (int32 ids, about 85 MB for
the training epoch), the framework and the model. npembed needs little beyond the batches.
""" + vocab_section()


def vocab_section(path: Path = Path(__file__).resolve().parent / "results" / "vocab.json") -> str:
    """The "First run" section from ``python -m benchmarks.vocab``'s results (empty without them)."""
    if not path.exists():
        return ""
    import json
    from benchmarks.vocab import markdown_table
    results = json.loads(path.read_text())
    m, seconds, ratios = results["machine"], results["seconds"], results["ratios"]
    tfds = ratios.get("tfds/npembed")
    target = (f"| vocabulary build >= 10x faster than tfds's `build_from_corpus` | {tfds:.1f}x | "
              f"{'met' if tfds >= 10 else 'not met'} |\n" if tfds else "")
    encode = ratios.get("encode_reference_pool/encode_npembed")
    target += (f"| encoding the 50,000 reviews >= 5x faster than before (process pool) | {encode:.1f}x | "
               f"{'met' if encode >= 5 else 'not met'} |\n" if encode else "")
    cold = seconds["prepare_cold"]["median"]
    target += f"| `npembed prepare` from an empty cache < 15 s | {cold:.1f} s | {'met' if cold < 15 else 'not met'} |\n"
    return f"""
## First run: building the vocabulary and encoding the reviews

`python -m benchmarks.vocab` times what a first `npembed prepare` does, side by side in rounds
(each round runs every step in turn, so load from other jobs falls on all alike): building the
subwords8k vocabulary from the 25,000 train reviews (`build_from_corpus(target_vocab_size=2**13)`,
token counting included) with npembed's builder (`npembed/datasets/subwords_fast.py`), with the
pure-Python reference it is tested against (`subwords.py`), and with tfds's own
`SubwordTextEncoder.build_from_corpus`; every build must give the golden file's subwords or the
run fails. Then encoding all 50,000 reviews (ids checked equal), and `npembed prepare` from an
empty cache in a fresh process (reading the archive, building, encoding, writing the cache).
`encode 50,000 reviews: npembed` is `encode_texts` from scratch (the C module already built):
cutting the reviews into tokens, splitting each distinct token into subwords and copying the ids
of every occurrence, all in `csrc/tokenizer.c`. Inside `prepare` the train reviews' tokens are the ones
the vocabulary is counted from, and the test reviews are cut into tokens by a helper process
while the vocabulary is built; a cold `prepare` also compiles the C module (about a second, in a
thread while the archive is read). Measured {results["date"][:10]} with `{results["command"]}` on
{m["cpu"]}, {m["cores"]} cores (shared with other jobs), Python {m["python"]}, NumPy {m["numpy"]}:

{markdown_table(results)}

| target | measured | |
|---|---|---|
{target}"""


HAND_WRITTEN = "<!-- Written by hand from here on: `python -m benchmarks.report` keeps it. -->"


def write_docs_page(results: dict, path: Path) -> None:
    """Write ``docs_page(results)`` to ``path``, keeping the page's hand-written tail (from the
    ``HAND_WRITTEN`` line on: the measurements no results file holds)."""
    old = path.read_text() if path.exists() else ""
    at = old.find(HAND_WRITTEN)
    atomic_write_text(path, docs_page(results) + ("\n" + old[at:] if at >= 0 else ""))


def main() -> None:
    import argparse
    import json
    parser = argparse.ArgumentParser(description="Write docs/benchmarks.md and its charts (and print the "
                                                 "tables) from a results JSON")
    parser.add_argument("results", nargs="?", default=str(Path(__file__).resolve().parent / "results" / "latest.json"))
    parser.add_argument("--docs", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text())
    write_docs_page(results, Path(args.docs))
    write_charts(results, Path(args.docs).parent / "images")
    print(markdown_tables(results))
    print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
