"""``python -m benchmarks [--quick]``: run every framework side by side and report ratios."""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_info, memory_floor
from benchmarks.workload import save_workload

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("npembed", "keras", "keras_jit", "torch", "jax")
JIT_STEPS = 300


def run_worker(spec: dict, workdir: Path, timeout: int) -> dict:
    name = f"{spec['framework']}-{spec['task']}"
    spec = {**spec, "out": str(workdir / f"{name}.json")}
    spec_path = workdir / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    print(f"  {name} ...", flush=True, end=" ")
    completed = subprocess.run([sys.executable, "-m", "benchmarks.worker", str(spec_path)], cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        print("failed")
        raise RuntimeError(f"{name} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(Path(spec["out"]).read_text())
    print("done")
    return result


def summarize(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values)),
            "n": len(values)}


def sweep_points(quick: bool) -> list[dict]:
    base = {"vocab": 8185, "dim": 16, "batch": 10, "length": 256, "steps": 200}
    if quick:
        return [base]
    points = []
    points += [{**base, "sweep": "vocab", "vocab": v} for v in (8185, 65_536, 262_144, 1_000_000)]
    points += [{**base, "sweep": "dim", "dim": d} for d in (16, 64, 256, 1024)]
    points += [{**base, "sweep": "batch", "batch": b, "steps": max(40, 2000 // b)} for b in (10, 64, 512)]
    points += [{**base, "sweep": "length", "length": n} for n in (64, 512, 4096)]
    return points


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 steps, npembed and Keras")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--data", default=None, help="IMDB data (default $NPEMBED_DATA)")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/latest.json; "
                                                    "a temporary file with --quick)")
    parser.add_argument("--no-sweeps", action="store_true")
    parser.add_argument("--charts", default=None, help="folder for the PNG charts (default docs/images)")
    args = parser.parse_args()

    from npembed.datasets import load_imdb_subwords8k
    frameworks = args.frameworks or (["npembed", "keras"] if args.quick else list(FRAMEWORKS))
    for framework, module in (("torch", "torch"), ("jax", "optax")):
        if framework in frameworks and importlib.util.find_spec(module) is None:
            print(f"{module} is not installed (pip install -e '.[bench]'): skipping {framework}")
            frameworks.remove(framework)
    repeats = args.repeats or (2 if args.quick else 3)
    steps = 200 if args.quick else None
    data = load_imdb_subwords8k(args.data, progress=True)
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
               "command": " ".join(["python -m benchmarks", *sys.argv[1:]]), "machine": machine_info(),
               "frameworks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        workload = workdir / "workload.npz"
        results["workload"] = save_workload(workload, data, train_steps=steps, predict_batches=200 if args.quick else None)
        print(f"workload: {results['workload']}")
        for framework in frameworks:
            entry = {}
            spec = {"framework": framework, "workload": str(workload), "repeats": repeats,
                    "warmup_epochs": 1}
            total_steps = results["workload"]["train_steps"]
            # XLA compiles once per distinct batch shape (about 0.5 s each here, and a padded
            # epoch has ~1,500 shapes): time it on the first JIT_STEPS batches, repeated after
            # one compiling pass, and scale to the epoch (marked as extrapolated).
            steps = min(JIT_STEPS, total_steps) if framework == "keras_jit" else total_steps
            train = run_worker({**spec, "task": "train", "steps": steps}, workdir, timeout=3600)
            scale = total_steps / steps
            entry["steps_timed"] = steps
            entry["epoch_seconds"] = summarize([t * scale for t in train["epoch_seconds"]])
            entry["warmup_epoch_seconds"] = train["warmup_epoch_seconds"]
            entry["train_peak_rss_mb"] = train["peak_rss_mb"]
            if "step_breakdown_us" in train:
                entry["step_breakdown_us"] = train["step_breakdown_us"]
            median = entry["epoch_seconds"]["median"]
            entry["ms_per_step"] = 1000 * median / total_steps
            entry["tokens_per_second"] = results["workload"]["train_tokens"] / median
            if framework != "keras_jit":    # predict compiles per shape too: the same story
                predict = run_worker({**spec, "task": "predict"}, workdir, timeout=1800)
                entry["predict_seconds"] = summarize(predict["predict_seconds"])
            results["frameworks"][framework] = entry
        if not args.no_sweeps:
            sweep = {}
            for framework in [*frameworks, "npembed_lazy"]:
                if framework in ("keras_jit", "jax"):
                    continue        # one XLA compilation per shape: a sweep measures compiles
                points = sweep_points(args.quick)
                if framework == "npembed_lazy":
                    points = [{"vocab": 8185, "dim": 16, "batch": 10, "length": 256, "steps": 200, "sweep": "lazy"},
                              {"vocab": 1_000_000, "dim": 64, "batch": 10, "length": 256, "steps": 200, "sweep": "lazy"}]
                lazy = framework == "npembed_lazy"      # a ratio of two points: time them in turn
                sweep[framework] = run_worker({"framework": framework, "task": "sweep", "points": points,
                                               "repeats": 7 if lazy else 2, "interleave": lazy},
                                              workdir, timeout=3600)["points"]
            results["sweeps"] = sweep
    tokens = results["workload"]["train_tokens"] / results["workload"]["train_steps"]
    results["floor"] = memory_floor(data.encoder.vocab_size, 16, 16, tokens)
    npembed = results["frameworks"]["npembed"]
    results["ratios"] = {
        f"npembed/{name}": {
            "train_epoch": npembed["epoch_seconds"]["median"] / entry["epoch_seconds"]["median"],
            "predict": (npembed["predict_seconds"]["median"] / entry["predict_seconds"]["median"]
                        if "predict_seconds" in entry else None),
            "train_peak_rss": npembed["train_peak_rss_mb"] / entry["train_peak_rss_mb"]}
        for name, entry in results["frameworks"].items() if name != "npembed"}
    out = Path(args.out) if args.out else (Path(tempfile.gettempdir()) / "npembed-quick-bench.json" if args.quick
                                           else ROOT / "benchmarks" / "results" / "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    from benchmarks.report import markdown_tables, write_charts
    print(markdown_tables(results))
    if not args.quick:
        write_charts(results, Path(args.charts) if args.charts else ROOT / "docs" / "images")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
