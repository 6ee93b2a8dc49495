"""The benchmark machinery works end to end (not a timing test: no speed is asserted)."""
import json

import numpy as np

from benchmarks import worker
from benchmarks.report import markdown_tables
from benchmarks.workload import load_workload, save_workload, synthetic_batches


def test_workload_round_trip(imdb, tmp_path):
    info = save_workload(tmp_path / "w.npz", imdb, train_steps=30, predict_batches=5)
    vocab, train, test = load_workload(tmp_path / "w.npz")
    assert vocab == 8185 and len(train) == 30 and len(test) == 5 and info["predict_reviews"] == 50
    reference = list(imdb.train.batches(10, 1000, seed=0).for_epoch(0))[:30]
    for (x, y), (rx, ry) in zip(train, reference):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)


def test_npembed_worker_and_report(imdb, tmp_path):
    save_workload(tmp_path / "w.npz", imdb, train_steps=20, predict_batches=3)
    spec = {"framework": "npembed", "task": "train", "workload": str(tmp_path / "w.npz"), "repeats": 2,
            "warmup_epochs": 1, "out": str(tmp_path / "out.json")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    import sys
    sys.argv = ["worker", str(tmp_path / "spec.json")]
    worker.main()
    result = json.loads((tmp_path / "out.json").read_text())
    assert len(result["epoch_seconds"]) == 2 and result["peak_rss_mb"] > 10
    entry = {"epoch_seconds": {"median": 1.0, "min": 0.9, "max": 1.2, "n": 2}, "ms_per_step": 0.4,
             "tokens_per_second": 1e6, "predict_seconds": {"median": 0.1, "min": 0.1, "max": 0.1, "n": 2},
             "train_peak_rss_mb": 100, "warmup_epoch_seconds": [1.0]}
    results = {"workload": {"train_steps": 20, "train_tokens": 1000, "predict_reviews": 30},
               "frameworks": {"npembed": entry}, "ratios": {}, "floor": {"bytes_per_step": 3e6,
               "copy_bandwidth_gb_s": 50, "floor_ms_per_step": 0.06}}
    assert "| npembed (Keras 3's Adam) | 1.00 |" in markdown_tables(results)


def test_synthetic_batches_are_identical_for_a_seed():
    a, b = synthetic_batches(1000, 4, 16, 3), synthetic_batches(1000, 4, 16, 3)
    for (x, y), (u, v) in zip(a, b):
        np.testing.assert_array_equal(x, u)
    assert a[0][0].max() < 1000 and (a[0][0][0, -4:] == 0).all() and a[0][0].dtype == np.int32


def test_quick_benchmark_runs_end_to_end(imdb, tmp_path):
    """``python -m benchmarks --quick``, as CI's smoke run: every worker starts, finishes and
    reports; the ratios are printed (their values are not asserted: timings are not tests)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "quick.json"
    env = {**os.environ, "NPEMBED_DATA": str(imdb.source.path)}
    completed = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=root,
                               env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["frameworks"]) == {"npembed", "keras"}
    assert results["ratios"]["npembed/keras"]["train_epoch"] > 0
    assert "| ratio | training epoch |" in completed.stdout


def test_interleaved_sweep_reports_every_point_in_order(tmp_path):
    points = [{"vocab": 50, "dim": 4, "batch": 3, "length": 8, "steps": 4},
              {"vocab": 5000, "dim": 8, "batch": 3, "length": 8, "steps": 4}]
    result = worker.task_sweep({"framework": "npembed_lazy", "points": points, "repeats": 3,
                                "interleave": True}, None, [], [])
    assert [(p["vocab"], p["dim"]) for p in result["points"]] == [(50, 4), (5000, 8)]
    assert all(p["ms_per_step"] > 0 for p in result["points"])


def test_step_breakdown_names_every_part(imdb):
    import npembed
    model = npembed.tutorial_model(seed=0)
    model.compile()
    batches = list(imdb.train.batches(10, 1000, seed=0).for_epoch(0))[:5]
    parts = worker.step_breakdown(model, batches)
    assert parts.pop("kernel backend") in ("native", "numpy")
    assert len(parts) == 5 and all(value > 0 for value in parts.values())
    assert model.optimizer.iterations == 5


def test_keras_runner_feeds_keras_the_same_batches(imdb, tmp_path):
    import pytest
    pytest.importorskip("tensorflow")
    save_workload(tmp_path / "w.npz", imdb, train_steps=30, predict_batches=3)
    _, train, test = load_workload(tmp_path / "w.npz")
    dataset = worker.KerasRunner.dataset(train)
    assert dataset.cardinality().numpy() == 30             # known: fit takes exactly 30 steps
    for (x, y), (rx, ry) in zip(dataset, train):
        np.testing.assert_array_equal(x.numpy(), rx)        # same ids, same padded shape
        np.testing.assert_array_equal(y.numpy(), ry)
    for x, (rx, _) in zip(worker.KerasRunner.dataset(test, with_labels=False), test):
        np.testing.assert_array_equal(x.numpy(), rx)


def test_docs_page_is_the_report_of_the_recorded_results_and_keeps_its_hand_written_tail(tmp_path):
    """docs/benchmarks.md is `python -m benchmarks.report`'s page for the recorded results, then
    the measurements written by hand (first run, n-gram comparison), which the report keeps."""
    from pathlib import Path
    from benchmarks.report import HAND_WRITTEN, docs_page, write_docs_page
    root = Path(__file__).resolve().parents[1]
    results = json.loads((root / "benchmarks" / "results" / "latest.json").read_text())
    page = (root / "docs" / "benchmarks.md").read_text()
    generated, tail = page.split(HAND_WRITTEN)
    assert generated == docs_page(results) + "\n", "run: python -m benchmarks.report"
    copy = tmp_path / "benchmarks.md"
    copy.write_text("an older generated page\n" + HAND_WRITTEN + tail)
    write_docs_page(results, copy)
    assert copy.read_text() == page
