"""The docs' generated parts are current, and the worked example's claims hold."""
from pathlib import Path

import numpy as np

from npembed import worked_example

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_worked_example_in_docs_is_what_the_code_prints():
    text = (DOCS / "gradients.md").read_text()
    assert worked_example.markdown() in text, "run: python -m npembed.worked_example --write"


def test_worked_example_step_sizes():
    model, ids, labels = worked_example.build()
    before = model.get_weights()[0]
    model.train_on_batch(ids, labels)
    moved = np.abs(model.get_weights()[0] - before)
    # epsilon = 1e-7 beside sqrt(v) ~ 3e-3 and the float32 betas shift the steps by ~4e-5 relative
    np.testing.assert_allclose(moved[:2], 0.1 * np.sqrt(2), rtol=1e-4)   # rows looked up twice
    np.testing.assert_allclose(moved[2:], 0.1, rtol=1e-4)                # rows looked up once
    assert np.all(moved[:2] > 1.4 * moved[2:].max())
