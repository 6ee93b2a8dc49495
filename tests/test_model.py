"""Sequential: gradients of the whole model, Keras bookkeeping, weights in and out."""
import subprocess
import sys

import numpy as np
import pytest

import npembed
from npembed.gradcheck import check_model_gradients
from npembed.layers import Dense, Embedding, GlobalAveragePooling1D

from conftest import small_model


@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("hidden_units", [5, 0])
def test_whole_model_gradients_match_finite_differences(small_batch, mask_zero, hidden_units):
    ids, labels = small_batch
    model = small_model(mask_zero=mask_zero, hidden_units=hidden_units)
    errors = check_model_gradients(model, ids, labels)
    assert len(errors) == (5 if hidden_units else 3)
    assert max(errors.values()) < 1e-6, errors


def test_padding_row_gets_no_gradient_when_masked(small_batch):
    ids, labels = small_batch
    _, grads = small_model(mask_zero=True).compute_gradients(ids, labels)
    np.testing.assert_array_equal(grads[0][0], 0)
    _, grads = small_model(mask_zero=False).compute_gradients(ids, labels)
    assert np.abs(grads[0][0]).sum() > 0


def test_summary_shows_the_tutorial_parameter_counts():
    lines = []
    npembed.tutorial_model(seed=0).summary(print_fn=lines.append)
    text = "\n".join(lines)
    for count in ("130,960", "| 0 |", "272", "17", "Total params: 131,249"):
        assert count.replace("| 0 |", "0") in text
    assert "(None, None, 16)" in text and "dense_1 (Dense)" in text


def test_same_seed_same_weights_and_keras_order():
    a, b = npembed.tutorial_model(seed=1), npembed.tutorial_model(seed=1)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    shapes = [w.shape for w in a.get_weights()]
    assert shapes == [(8185, 16), (16, 16), (16,), (16, 1), (1,)]
    assert a.weight_names == ["embedding/embeddings", "dense/kernel", "dense/bias",
                              "dense_1/kernel", "dense_1/bias"]
    assert not np.array_equal(a.get_weights()[0], npembed.tutorial_model(seed=2).get_weights()[0])


def test_dtype_float32_by_default_float64_on_request(small_batch):
    ids, _ = small_batch
    assert small_model(dtype="float32")(ids).dtype == np.float32
    assert all(w.dtype == np.float32 for w in npembed.tutorial_model().weights)
    assert small_model(dtype="float64")(ids).dtype == np.float64
    with pytest.raises(TypeError, match="float32' or 'float64"):
        small_model(dtype="float16")


def test_set_weights_round_trip_and_shape_check():
    model = small_model()
    weights = [w + 1 for w in model.get_weights()]
    model.set_weights(weights)
    for w, expected in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(w, expected)
    with pytest.raises(ValueError, match=r"embedding/embeddings has shape \(30, 4\), got \(4, 30\)"):
        model.set_weights([weights[0].T, *weights[1:]])
    with pytest.raises(ValueError, match="got 4 arrays, the model has 5"):
        model.set_weights(weights[:4])


def test_train_on_batch_lowers_the_loss(small_batch):
    ids, labels = small_batch
    model = small_model(dtype="float32")
    model.compile(optimizer=npembed.optimizers.Adam(learning_rate=0.01))
    losses = [model.train_on_batch(ids, labels) for _ in range(50)]
    assert losses[-1] < 0.5 * losses[0]
    assert model.optimizer.iterations == 50


def test_compute_gradients_changes_nothing(small_batch):
    ids, labels = small_batch
    model = small_model()
    before = model.get_weights()
    loss, grads = model.compute_gradients(ids, labels)
    assert loss > 0 and len(grads) == 5
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_reports_keras_epoch_logs(small_batch):
    ids, labels = small_batch
    batches = [(ids[:4], labels[:4]), (ids[4:], labels[4:])]        # sizes 4 and 2
    model = small_model(dtype="float64")
    model.compile(metrics=["accuracy", "tutorial_accuracy"])
    probe = small_model(dtype="float64")
    probe.compile(metrics=["accuracy"])
    expected_losses = [probe.train_on_batch(*b) for b in batches]
    history = model.fit(batches, epochs=2, validation_data=batches, validation_steps=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "tutorial_accuracy", "val_loss",
                                    "val_accuracy", "val_tutorial_accuracy"}
    assert history.epoch == [0, 1]
    weighted = (4 * expected_losses[0] + 2 * expected_losses[1]) / 6
    assert history.history["loss"][0] == pytest.approx(weighted, rel=1e-12)
    val = model.evaluate(batches[:1])
    assert history.history["val_loss"][1] == pytest.approx(val["loss"], rel=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_every_layer_fills_its_own_grads(small_batch, fused):
    """After one step every layer with weights holds a gradient for each of them, the
    embedding's included (the fused path used to leave ``layers[0].grads`` empty)."""
    ids, labels = small_batch
    model = small_model()
    model.fused = fused
    assert model.fused is fused
    assert [type(layer).__name__ for layer in model.layers] == [
        "Embedding", "GlobalAveragePooling1D", "Dense", "Dense"]
    assert len(model.steps) == (3 if fused else 4)
    _, dense = model.compute_gradients(ids, labels)
    for layer in model.layers:
        assert set(layer.grads) == set(layer.params), layer.name
    np.testing.assert_allclose(model.layers[0].grads["embeddings"].to_dense(), dense[0])
    assert model.layers[0].cache["ids"] is not None and "seq_len" in model.layers[1].cache


def test_validation_uses_the_compiled_metric_objects(small_batch):
    """A metric with its own threshold and name is evaluated as compiled, in fit's validation
    and in evaluate (it used to be rebuilt from its name: an error, or threshold 0)."""
    ids, labels = small_batch
    model = small_model()
    model.compile(metrics=[npembed.metrics.BinaryAccuracy(0.3, name="acc_at_0.3"),
                           npembed.metrics.BinaryAccuracy(1e9, name="accuracy")])
    history = model.fit([(ids, labels)], epochs=1, validation_data=[(ids, labels)], verbose=0).history
    logits = model(ids)[:, 0]
    result = model.evaluate([(ids, labels)])
    assert result["acc_at_0.3"] == history["val_acc_at_0.3"][0] == np.mean((logits > 0.3) == labels)
    assert result["accuracy"] == np.mean(labels == 0)               # nothing is above 1e9
    assert model.metrics[0].threshold == 0.3 and model.metrics[0].count == len(labels)  # the training tally


def test_accuracy_thresholds_logits_at_zero_and_quirk_at_half():
    correct = npembed.metrics.get("accuracy")
    quirk = npembed.metrics.get("tutorial_accuracy")
    logits = np.array([[0.3], [-0.2], [0.7]])
    labels = np.array([1, 0, 1])
    correct.update_state(labels, logits)
    quirk.update_state(labels, logits)
    assert correct.result() == 1.0
    assert quirk.result() == pytest.approx(2 / 3)     # logit 0.3 is positive but below 0.5


def test_predict_and_evaluate(small_batch):
    ids, labels = small_batch
    model = small_model()
    np.testing.assert_allclose(model.predict(ids, batch_size=4), model(ids))
    np.testing.assert_allclose(model.predict([(ids[:3], labels[:3]), (ids[3:], labels[3:])]),
                               np.concatenate([model(ids[:3]), model(ids[3:])]))
    assert set(model.evaluate([(ids, labels)])) == {"loss", "accuracy"}


def test_non_finite_loss_stops_without_touching_weights(small_batch):
    ids, labels = small_batch
    model = small_model(dtype="float32")
    model.compile()
    model.weights[0][ids[0, 0]] = np.nan              # set_weights refuses NaN: write the live array
    before = model.get_weights()
    with pytest.raises(npembed.NonFiniteLossError, match="the loss is nan"):
        model.train_on_batch(ids, labels)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == 0


def test_first_layer_must_be_an_embedding():
    with pytest.raises(ValueError, match="first layer must be an Embedding"):
        npembed.Sequential([GlobalAveragePooling1D(), Dense(1)])


def test_keras_style_construction():
    model = npembed.Sequential([Embedding(8185, 16), GlobalAveragePooling1D(),
                                Dense(16, activation="relu"), Dense(1)], seed=0)
    model.compile(optimizer=npembed.optimizers.Adam(),
                  loss=npembed.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    assert model.count_params() == 131_249


def test_import_needs_only_numpy():
    code = "import sys, npembed, npembed.datasets; print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib', 'tensorflow_datasets', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_training_step_imports_no_data_code():
    """The model and its native kernels need NumPy only: not the datasets package."""
    code = ("import sys, npembed; from npembed import kernels; kernels.backend(); "
            "print(sorted(m for m in sys.modules if m.startswith('npembed.datasets')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_set_weights_checks_every_array_before_writing_any():
    """Issue 22 item 6: a bad later array (NaN, inf, beyond float32, a wrong shape) leaves the
    earlier weights as they were."""
    model = npembed.tutorial_model(vocab_size=30, embedding_dim=4, hidden_units=3, seed=0)
    before = model.get_weights()
    for position, bad in ((4, np.array([np.nan])), (2, np.full((3, 1), np.inf)),
                          (4, np.array([1e39])), (3, np.zeros(2))):
        weights = [w + 1 for w in before]
        weights[position] = bad
        with pytest.raises(ValueError, match="set_weights"):
            model.set_weights(weights)
        for kept, live in zip(before, model.weights):
            np.testing.assert_array_equal(kept, live)
    model.set_weights([w + 1 for w in before])
    np.testing.assert_array_equal(model.weights[0], before[0] + 1)


class LastStep(npembed.layers.Layer):
    """(B, L, D) -> (B, D): the last position's vector (a layer of an LSTM's shape)."""

    def build(self, input_width, rng, dtype):
        super().build(input_width, rng, dtype)
        return input_width

    def forward(self, x, mask=None):
        self.cache = {"shape": x.shape}
        return x[:, -1, :]

    def backward(self, dout):
        dx = np.zeros(self.cache["shape"], dtype=dout.dtype)
        dx[:, -1, :] = dout
        return dx

    def compute_mask(self, inputs, mask):
        return None

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"LastStep takes rank-3 input, got rank {len(input_shape)}")
        return (input_shape[0], input_shape[2])


def test_a_layer_from_rank_3_to_rank_2_is_accepted_and_checked_by_its_output_shape(small_batch):
    """Sequential asks each layer's output_shape: a new rank-3 -> rank-2 layer fits after the
    Embedding without Sequential knowing it, and a wrong stack is still refused."""
    from npembed.layers import Dense, Embedding, GlobalAveragePooling1D
    ids, labels = small_batch
    model = npembed.Sequential([Embedding(30, 4), LastStep(), Dense(1)], seed=0, dtype="float64")
    model.compile()
    model.train_on_batch(ids, labels)
    assert model(ids).shape == (ids.shape[0], 1)
    with pytest.raises(ValueError, match="layer 2 .*LastStep takes rank-3 input"):
        npembed.Sequential([Embedding(30, 4), GlobalAveragePooling1D(), LastStep()])
    with pytest.raises(ValueError, match="only the first layer can take token ids"):
        npembed.Sequential([Embedding(30, 4), GlobalAveragePooling1D(), Embedding(30, 4)])


def test_compile_takes_any_loss_with_a_value_and_a_gradient(small_batch):
    class Squared:
        """Mean squared error on the logits: another loss, to show compile takes any."""

        def __call__(self, labels, logits):
            return float(np.mean((logits[:, 0] - labels) ** 2))

        def gradient(self, labels, logits):
            return (2 * (logits[:, 0] - labels) / len(labels))[:, None]

    ids, labels = small_batch
    model = small_model(dtype="float64")
    model.compile(loss=Squared())
    loss, grads = model.compute_gradients(ids, labels)
    objective = lambda: model.loss(labels, model.forward(ids))      # noqa: E731
    np.testing.assert_allclose(grads[-1], npembed.gradcheck.numerical_gradient(objective, model.weights[-1]),
                               rtol=1e-6, atol=1e-9)
    with pytest.raises(TypeError, match="loss must be"):
        model.compile(loss=lambda labels, logits: 0.0)               # no gradient


def test_an_optimizer_with_another_models_state_is_refused_at_compile(small_batch):
    """Issue 22 item 4 through the model API: one Adam trained with one model, then compiled
    into a model of other shapes, is refused before any step (and the first model's run goes on)."""
    ids, labels = small_batch
    first = npembed.tutorial_model(vocab_size=30, embedding_dim=4, hidden_units=3, seed=0)
    adam = npembed.optimizers.Adam()
    first.compile(optimizer=adam)
    first.train_on_batch(ids, labels)
    other = npembed.tutorial_model(vocab_size=30, embedding_dim=5, hidden_units=3, seed=0)
    with pytest.raises(ValueError, match="does not fit the weights.*its own optimizer"):
        other.compile(optimizer=adam)
    first.train_on_batch(ids, labels)
    assert adam.iterations == 2


def test_no_import_cycle_in_npembed():
    """The house rule: no module of npembed imports, directly or through others, a module that
    imports it back (in-function imports count).  ``from package import submodule`` is an edge to
    the submodule; a package's ``__init__`` is left out as a target (importing npembed.x runs
    npembed/__init__.py first by Python's rules, not by a choice of the code)."""
    import ast
    from pathlib import Path
    root = Path(npembed.__file__).parent
    modules = {".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): path
               for path in root.rglob("*.py")}
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("npembed"):
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                           else node.module for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("npembed")]
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name
                            and not modules[t].name == "__init__.py"}
    def reaches(start, goal, seen):
        return any(nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen))
                   for nxt in edges[start])
    cycles = sorted(name for name in modules if reaches(name, name, set()))
    assert cycles == [], f"modules on an import cycle: {cycles}"
