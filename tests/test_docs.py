"""The docs' generated parts are current, and the worked example's claims hold."""
import json
from pathlib import Path

import numpy as np

from npembed import worked_example

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_worked_example_in_docs_is_what_the_code_prints():
    text = (DOCS / "gradients.md").read_text()
    assert worked_example.markdown() in text, "run: python -m npembed.worked_example --write"


def test_worked_example_step_sizes():
    """keras2 (the default) moves every entry by lr at the first step; keras3 moves a row looked
    up twice with equal slices by lr * sqrt(2)."""
    # epsilon = 1e-7 beside sqrt(v) ~ 3e-3 and the float32 betas shift the steps by ~4e-5 relative
    moved = {}
    for variant in ("keras2", "keras3"):
        model, ids, labels = worked_example.build(variant)
        before = model.get_weights()[0]
        model.train_on_batch(ids, labels)
        moved[variant] = np.abs(model.get_weights()[0] - before)
    np.testing.assert_allclose(moved["keras2"], 0.1, rtol=1e-4)
    np.testing.assert_allclose(moved["keras3"][:2], 0.1 * np.sqrt(2), rtol=1e-4)   # rows looked up twice
    np.testing.assert_allclose(moved["keras3"][2:], 0.1, rtol=1e-4)                # rows looked up once


def test_adam_variants_tables_in_docs_are_the_recorded_results():
    """docs/gradients.md shows what `python -m benchmarks.adam_variants` last recorded."""
    from benchmarks import adam_variants
    results = json.loads(adam_variants.RESULTS.read_text())
    assert adam_variants.markdown(results) in (DOCS / "gradients.md").read_text(), \
        "paste the tables `python -m benchmarks.adam_variants` prints into docs/gradients.md"
    curves = {(run["variant"], run["mask"], run["padding row swapped"]): run["loss"] for run in results["curves"]}
    # the claims the text makes of them
    assert curves["keras3", False, False][-1] > 2 * curves["keras2", False, False][-1]
    assert curves["keras2", False, True][-1] > 2 * curves["keras2", False, False][-1]     # padding S swapped in
    assert curves["keras3", False, True][-1] < 1.2 * curves["keras2", False, False][-1]   # and out
