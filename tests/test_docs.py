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


def test_worked_example_sizes_all_differ_and_no_weight_is_symmetric():
    """So that a transposed product fails on its shape instead of passing by coincidence."""
    sizes = [worked_example.B, worked_example.L, worked_example.D, worked_example.H, worked_example.V]
    assert len(set(sizes)) == len(sizes)
    for weight in worked_example.WEIGHTS:
        assert weight.ndim == 1 or weight.shape[0] != weight.shape[1]
    assert worked_example.LEARNING_RATE != 1 - 0.9             # lr is not 1 - beta_1: m = 0.1 dE is not lr dE
    ids = worked_example.IDS
    assert (ids == 0).any() and (ids[0] != 0).all()            # padding in one review only
    assert any(np.bincount(row[row > 0]).max() > 1 for row in ids)     # an id repeated within a review


def test_worked_example_backward_by_hand_is_the_models():
    """dpooled by hand (dz @ W2.T * [z1 > 0] @ W1.T) is L times the slice the model's backward
    produced, and dE is C.T @ g."""
    model, ids, labels = worked_example.build()
    _, grads = model.compute_gradients(ids, labels)
    _, _, _, dpooled = worked_example.backward_by_hand(model, labels)
    slices = model.layers[0].grads["embeddings"]
    np.testing.assert_allclose(slices.values, np.repeat(dpooled / worked_example.L, worked_example.L, axis=0),
                               rtol=1e-15)
    counts = np.stack([np.bincount(row, minlength=worked_example.V) for row in ids])
    np.testing.assert_allclose(grads[0], counts.T @ (dpooled / worked_example.L), rtol=1e-14)


def test_worked_example_catches_the_common_mistakes():
    """What makes it a good example: each mistake gives a wrong answer or a shape error."""
    model, ids, labels = worked_example.build()
    _, grads = model.compute_gradients(ids, labels)
    hidden = model.layers[2]
    pooled, z1 = hidden.cache["x"], hidden.cache["z"]
    dz, dh, dz1, dpooled = worked_example.backward_by_hand(model, labels)
    W1 = worked_example.WEIGHTS[1]
    # each review has an active and an inactive hidden unit with dh != 0 there
    active = z1 > 0
    assert active.any(axis=1).all() and (~active).any(axis=1).all()
    assert (np.abs(dh[~active]) > 1e-3).any()
    # W1 where W1.T belongs: a shape error, not a silent wrong answer
    with pytest.raises(ValueError):
        dz1 @ W1
    assert (dz1.T @ pooled).shape != grads[1].shape             # dW1 transposed: (H, D), not W1's (D, H)
    # skipping the ReLU mask changes dpooled and dW1
    assert not np.allclose(dh @ W1.T, dpooled)
    assert not np.allclose(pooled.T @ dh, grads[1])
    # dE[ids] += dx keeps one slice of the repeated id: row 1 (twice in review 0) gets g[0], not 2 g[0]
    dx = np.repeat(dpooled[:, None, :] / worked_example.L, worked_example.L, axis=1)
    wrong = np.zeros_like(grads[0])
    wrong[ids] += dx
    assert not np.allclose(wrong, grads[0])
    np.testing.assert_allclose(wrong[1], grads[0][1] / 2, rtol=1e-14)
    # dividing by n_b instead of L (unmasked model): right for review 0 (no padding), wrong for review 1
    n = (ids != 0).sum(axis=1)
    bug = (ids != 0)[:, :, None] * dpooled[:, None, :] / n[:, None, None]
    assert np.allclose(bug[0], dx[0]) and not np.allclose(bug[1], dx[1])


@pytest.mark.parametrize("variant", ["keras2", "keras3"])
def test_worked_example_step_sizes(variant):
    """keras2 moves every entry by lr; keras3 moves a row holding q equal slices by lr * sqrt(q)
    (row 1: two, row 0 the padding: three), and row 2 (two unequal slices) by lr |g0 + g1| / |(g0, g1)|."""
    lr = worked_example.LEARNING_RATE
    model, ids, labels = worked_example.build(variant)
    model.compute_gradients(ids, labels)
    g = model.layers[0].grads["embeddings"].row_gradient
    before = model.get_weights()[0]
    model.train_on_batch(ids, labels)
    moved = np.abs(model.get_weights()[0] - before)
    # epsilon = 1e-7 beside sqrt(v) ~ 4e-4 and the float32 betas shift the steps by ~3e-4 relative
    if variant == "keras2":
        np.testing.assert_allclose(moved, lr, rtol=1e-3)
    else:
        np.testing.assert_allclose(moved[1], lr * np.sqrt(2), rtol=1e-3)
        np.testing.assert_allclose(moved[0], lr * np.sqrt(3), rtol=1e-3)
        np.testing.assert_allclose(moved[3:], lr, rtol=1e-3)
        np.testing.assert_allclose(moved[2], lr * np.abs(g[0] + g[1]) / np.sqrt(g[0] ** 2 + g[1] ** 2), rtol=1e-3)


def test_model_graph_shapes_come_from_the_model():
    import npembed
    from npembed.plots import model_graph_nodes
    forward, backward, grads = model_graph_nodes(npembed.tutorial_model(vocab_size=50, embedding_dim=3, hidden_units=7))
    texts = [text for _, text in forward]
    assert texts[0] == "ids (B, L)" and "x (B, L, 3)" in texts and "h (B, 7)" in texts
    assert "Embedding\nembeddings (50, 3)" in texts and "Dense (relu)\nkernel (3, 7)\nbias (7,)" in texts
    assert backward[1].startswith("slices (B*L, 3)") and grads[2] == "dkernel (3, 7)\ndbias (7,)"
    assert (DOCS / "images" / "model_graph.png").exists()


def test_operation_graph_has_relu_and_a_local_gradient_per_operation():
    from npembed.plots import OPERATIONS
    operations = [operation for _, operation, _, _ in OPERATIONS]
    assert any(op.startswith("ReLU") for op in operations) and all(local for *_, local in OPERATIONS)
    assert (DOCS / "images" / "operation_graph.png").exists()


def test_the_lesson_has_common_bugs_and_five_exercises_with_answers():
    import re
    text = (DOCS / "gradients.md").read_text()
    exercises = text[text.index("## 11. Exercises"):]
    questions, answers = exercises.split("**Answers.**")
    assert len(re.findall(r"^\d\. ", questions, re.M)) >= 5
    assert len(re.findall(r"^\d\. ", answers, re.M)) == len(re.findall(r"^\d\. ", questions, re.M))
    assert "## 10. Common bugs" in text and "dE[ids] += dx" in text


def test_lazy_adam_first_step_numbers_in_the_docs():
    """A row first seen at step t first moves lr sqrt(1 - b2^t) / (1 - b1^t) (1 - b1) / sqrt(1 - b2):
    the 0.48, 2.5 and 3.16 the lesson and the appendix quote."""
    def first_step(t, b1=0.9, b2=0.999):
        return np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * (1 - b1) / np.sqrt(1 - b2)
    assert round(first_step(1), 6) == 1 and round(first_step(10), 2) == 0.48
    assert round(first_step(1000), 1) == 2.5 and round(first_step(10 ** 6), 2) == 3.16


def test_adam_variants_tables_in_docs_are_the_recorded_results():
    """docs/gradients_appendix.md shows what `python -m benchmarks.adam_variants` last recorded."""
    from benchmarks import adam_variants
    results = json.loads(adam_variants.RESULTS.read_text())
    assert adam_variants.markdown(results) in (DOCS / "gradients_appendix.md").read_text(), \
        "paste the tables `python -m benchmarks.adam_variants` prints into docs/gradients_appendix.md"
    curves = {(run["variant"], run["mask"], run["padding row swapped"]): run["loss"] for run in results["curves"]}
    # the claims the text makes of them
    assert curves["keras3", False, False][-1] > 2 * curves["keras2", False, False][-1]
    assert curves["keras2", False, True][-1] > 2 * curves["keras2", False, False][-1]     # padding S swapped in
    assert curves["keras3", False, True][-1] < 1.2 * curves["keras2", False, False][-1]   # and out
