"""The docs' generated parts are current, and the worked example's claims hold."""
import json
from pathlib import Path

import numpy as np
import pytest

from npembed import worked_example

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_worked_example_in_docs_is_what_the_code_prints():
    text = (DOCS / "gradients.md").read_text()
    assert worked_example.markdown() in text, "run: python -m npembed.worked_example --write"


def test_worked_example_hidden_layer_and_slices():
    """Each review has one inactive hidden unit, and the dpooled that the example derives by
    hand (dz @ W2.T * [z1 > 0] @ W1.T) is L times the slice the model's backward produced."""
    model, ids, labels = worked_example.build()
    model.compute_gradients(ids, labels)
    hidden, output = model.layers[2], model.layers[3]
    np.testing.assert_array_equal(hidden.cache["z"] > 0, [[True, False], [False, True]])
    dz = model.loss.gradient(labels, output.cache["z"])
    dpooled = (dz @ worked_example.WEIGHTS[3].T) * (hidden.cache["z"] > 0) @ worked_example.WEIGHTS[1].T
    slices = model.layers[0].grads["embeddings"]
    np.testing.assert_allclose(slices.values, np.repeat(dpooled / 3, 3, axis=0), rtol=1e-15)


@pytest.mark.parametrize("variant, twice_seen", [("keras2", 0.1), ("keras3", 0.1 * np.sqrt(2))])
def test_worked_example_step_sizes(variant, twice_seen):
    """keras2 moves every row by lr; keras3 moves a row looked up k times by lr * sqrt(k)."""
    model, ids, labels = worked_example.build(variant)
    before = model.get_weights()[0]
    model.train_on_batch(ids, labels)
    moved = np.abs(model.get_weights()[0] - before)
    # epsilon = 1e-7 beside sqrt(v) ~ 3e-3 and the float32 betas shift the steps by ~4e-5 relative
    np.testing.assert_allclose(moved[:2], twice_seen, rtol=1e-4)     # rows 0 and 1: two slices
    np.testing.assert_allclose(moved[2:], 0.1, rtol=1e-4)            # rows 2 and 3: one slice


def test_model_graph_shapes_come_from_the_model():
    import npembed
    from npembed.plots import model_graph_nodes
    forward, backward, grads = model_graph_nodes(npembed.tutorial_model(vocab_size=50, embedding_dim=3, hidden_units=7))
    texts = [text for _, text in forward]
    assert texts[0] == "ids (B, L)" and "x (B, L, 3)" in texts and "h (B, 7)" in texts
    assert "Embedding\nembeddings (50, 3)" in texts and "Dense (relu)\nkernel (3, 7)\nbias (7,)" in texts
    assert backward[1].startswith("slices (B*L, 3)") and grads[2] == "dkernel (3, 7)\ndbias (7,)"
    assert (DOCS / "images" / "model_graph.png").exists()


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
