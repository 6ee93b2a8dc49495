"""``python -m benchmarks.vocab``: the first run's data preparation, timed side by side.

Three builders of the subwords8k vocabulary from the 25,000 train reviews (token counting and
the binary search over min_count, ``build_from_corpus(target_vocab_size=2**13)``), each run in
turn within a round so that load from other jobs falls on all of them alike:

- ``npembed``: ``subwords_fast.build_from_corpus`` (what ``npembed prepare`` runs);
- ``npembed_reference``: ``SubwordEncoder.build_from_corpus``, the pure-Python port;
- ``tfds``: ``tfds.deprecated.text.SubwordTextEncoder.build_from_corpus`` (skipped without
  tensorflow-datasets).

Every build must give the golden file's subwords, or the benchmark fails.  Then the encoding of
all 50,000 reviews (``encode_texts`` against the reference encoder in one process and in a pool
of one process per CPU, as ``prepare`` encoded before issue #14), and ``npembed prepare`` from
an empty cache in a fresh process.  Results: ``benchmarks/results/vocab.json`` and a Markdown
table on stdout (docs/benchmarks.md quotes it).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "data" / "imdb_subwords8k.subwords"
TARGET = 2 ** 13


def build_npembed(texts):
    from npembed.datasets.subwords_fast import build_from_corpus
    return build_from_corpus(texts, TARGET).subwords


def build_reference(texts):
    from npembed.datasets.subwords import SubwordEncoder
    return SubwordEncoder.build_from_corpus(texts, TARGET).subwords


def build_tfds(texts):
    import tensorflow_datasets as tfds
    return tfds.deprecated.text.SubwordTextEncoder.build_from_corpus(iter(texts), target_vocab_size=TARGET).subwords


BUILDERS = {"npembed": build_npembed, "npembed_reference": build_reference, "tfds": build_tfds}


def _encode_reference_chunk(args):
    subwords, texts = args
    from npembed.datasets.subwords import SubwordEncoder
    encoder = SubwordEncoder(subwords)
    return [encoder.encode(text) for text in texts]


def encode_reference_pool(encoder, texts, workers):
    """The reference encoder over a process pool, chunks of 500 (prepare's encoding before #14)."""
    chunks = [(encoder.subwords, texts[i:i + 500]) for i in range(0, len(texts), 500)]
    with ProcessPoolExecutor(workers) as pool:
        return [ids for block in pool.map(_encode_reference_chunk, chunks) for ids in block]


def summarize(values):
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values)),
            "n": len(values), "all": [round(v, 3) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vocab", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="IMDB archive or folder (default $NPEMBED_DATA or the shared one)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the fast steps (default 3)")
    parser.add_argument("--slow-repeats", type=int, default=2,
                        help="of those rounds, how many also run the two slow builders (default 2)")
    parser.add_argument("--builders", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vocab.json"))
    args = parser.parse_args()

    from npembed.datasets.sources import read_reviews, resolve_source
    from npembed.datasets.subwords import SubwordEncoder
    from npembed.datasets.subwords_fast import encode_texts
    data = args.data or os.environ.get("NPEMBED_DATA") or str(ROOT.parent / "shared" / "data" / "aclImdb_labeled.tar.gz")
    reviews = read_reviews(resolve_source(data))
    train = [r.text for r in reviews["train"]]
    every = train + [r.text for r in reviews["test"]]
    golden = SubwordEncoder.load_from_file(GOLDEN).subwords
    builders = [b for b in args.builders if b != "tfds" or importlib.util.find_spec("tensorflow_datasets")]
    workers = os.cpu_count() or 1
    times: dict[str, list[float]] = {name: [] for name in
                                     [*builders, "encode_npembed", "encode_reference", "encode_reference_pool",
                                      "prepare_cold"]}
    encoder = SubwordEncoder(golden)
    expected_ids = None
    load = [os.getloadavg()[0]]                  # other jobs share the machine: say how busy it was
    for round_ in range(args.repeats):
        slow = round_ < args.slow_repeats
        for name in builders:
            if name != "npembed" and not slow:
                continue
            start = time.perf_counter()
            subwords = BUILDERS[name](train)
            times[name].append(time.perf_counter() - start)
            if subwords != golden:
                raise SystemExit(f"{name} built a vocabulary other than the golden file's")
            print(f"round {round_ + 1}: {name} build {times[name][-1]:.2f} s", flush=True)
        start = time.perf_counter()
        ids, offsets = encode_texts(SubwordEncoder(golden), every)
        times["encode_npembed"].append(time.perf_counter() - start)
        if slow:
            for name, run in (("encode_reference", lambda: [encoder.encode(t) for t in every]),
                              ("encode_reference_pool", lambda: encode_reference_pool(encoder, every, workers))):
                start = time.perf_counter()
                reference = run()
                times[name].append(time.perf_counter() - start)
                if expected_ids is None:
                    expected_ids = np.concatenate([np.asarray(r, dtype=np.int32) for r in reference])
            if not np.array_equal(ids, expected_ids):
                raise SystemExit("encode_texts gave other ids than the reference encoder")
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "npembed.cli", "prepare", "--data", data], cwd=ROOT, check=True,
                           capture_output=True, env={**os.environ, "NPEMBED_CACHE": cache})
            times["prepare_cold"].append(time.perf_counter() - start)
        load.append(os.getloadavg()[0])
        print(f"round {round_ + 1}: encode {times['encode_npembed'][-1]:.2f} s, "
              f"prepare from an empty cache {times['prepare_cold'][-1]:.2f} s", flush=True)

    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "command": " ".join(["python -m benchmarks.vocab", *sys.argv[1:]]), "machine": machine_info(),
               "workers_for_pool": workers, "load_average_1min": load, "seconds": {k: summarize(v) for k, v in times.items() if v}}
    seconds = results["seconds"]
    results["ratios"] = {f"{name}/npembed": seconds[name]["median"] / seconds["npembed"]["median"]
                         for name in builders if name != "npembed"}
    results["ratios"].update({f"{name}/encode_npembed": seconds[name]["median"] / seconds["encode_npembed"]["median"]
                              for name in ("encode_reference", "encode_reference_pool") if name in seconds})
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results))
    print(f"results: {args.out}")


LABELS = {"npembed": "build: npembed (subwords_fast)", "npembed_reference": "build: npembed reference (pure Python)",
          "tfds": "build: tfds SubwordTextEncoder.build_from_corpus",
          "encode_npembed": "encode 50,000 reviews: npembed (encode_texts)",
          "encode_reference": "encode 50,000 reviews: reference encoder, 1 process",
          "encode_reference_pool": "encode 50,000 reviews: reference encoder, process pool (before #14)",
          "prepare_cold": "`npembed prepare` from an empty cache (fresh process)"}


def markdown_table(results: dict) -> str:
    lines = ["| step | median s | min - max | runs |", "|---|---|---|---|"]
    for name, entry in results["seconds"].items():
        label = LABELS.get(name, name)
        if name == "encode_reference_pool":
            label = label.replace("process pool", f"pool of {results['workers_for_pool']} processes")
        lines.append(f"| {label} | {entry['median']:.2f} | {entry['min']:.2f} - {entry['max']:.2f} | {entry['n']} |")
    lines += ["", "| ratio (median / median) | |", "|---|---|"]
    lines += [f"| {name} | {ratio:.1f}x |" for name, ratio in results["ratios"].items()]
    if "load_average_1min" in results:
        load = results["load_average_1min"]
        lines += ["", f"The machine's 1-minute load average, at the start and after each round: "
                      f"{', '.join(f'{x:.1f}' for x in load)} (2 cores: above 2, other jobs took CPU time "
                      "from these measurements)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
