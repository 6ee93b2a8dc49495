"""The main job: train the tutorial's model, checkpoint every epoch, export and plot.

A run folder holds::

    config.json                 the options of the run
    checkpoint.npz              weights, Adam state, epoch, history (atomic, every epoch)
    history.json, history.csv   per-epoch loss, accuracy, val_loss, val_accuracy
    results.json                full-test-set evaluation, timings
    loss.png, accuracy.png      the tutorial's two figures
    vecs.tsv, meta.tsv          the Embedding Projector files (tutorial format)
    projector_config.pbtxt      so that `tensorboard --logdir RUN` shows the projector
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import npembed
from npembed.atomic import atomic_write_text
from npembed.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from npembed.model import Callback, History, NonFiniteLossError

CHECKPOINT = "checkpoint.npz"
CONFIG = "config.json"


class RunError(ValueError):
    """A bad option or run folder."""


@dataclasses.dataclass
class TrainConfig:
    """The tutorial's settings by default."""

    epochs: int = 10
    batch_size: int = 10
    embedding_dim: int = 16
    hidden_units: int = 16
    mask: bool = False
    learning_rate: float = 0.001
    seed: int = 0
    validation_steps: int | None = 20
    shuffle_buffer: int = 1000
    early_stopping: int = 0          # patience in epochs on val_loss; 0 = off
    steps_per_epoch: int | None = None
    adam_variant: str = "keras2"     # the tutorial's tf.keras Adam; see optimizers.py

    def validate(self) -> None:
        checks = [("epochs", 1), ("batch_size", 1), ("embedding_dim", 1), ("hidden_units", 0),
                  ("shuffle_buffer", 0), ("early_stopping", 0)]
        for name, low in checks:
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise RunError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        for name in ("validation_steps", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise RunError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise RunError(f"--learning-rate must be positive, got {self.learning_rate!r}")


def build_model(config: TrainConfig, vocab_size: int) -> npembed.Sequential:
    model = npembed.tutorial_model(vocab_size=vocab_size, embedding_dim=config.embedding_dim,
                                   hidden_units=config.hidden_units, mask_zero=config.mask, seed=config.seed)
    model.compile(optimizer=npembed.optimizers.Adam(learning_rate=config.learning_rate, variant=config.adam_variant),
                  loss=npembed.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def prepare_run_folder(out: Path, config: TrainConfig | None, resume: bool) -> TrainConfig:
    """Check the run folder; on resume, return its saved config (epochs may be raised)."""
    if resume:
        if not (out / CONFIG).is_file():
            raise RunError(f"{out} is not an npembed run folder (no {CONFIG}); start a run with "
                           f"`npembed train --out {out}` first")
        saved = TrainConfig(**json.loads((out / CONFIG).read_text()))
        if config is not None and config.epochs != saved.epochs:
            saved.epochs = config.epochs
        return saved
    if out.exists() and any(out.iterdir()):
        if (out / CONFIG).is_file():
            raise RunError(f"{out} already holds a run: pass --resume to continue it, or choose "
                           "another --out")
        raise RunError(f"{out} exists and is not empty, and is not an npembed run folder: choose "
                       "another --out")
    return config


def train(config: TrainConfig, out: str | os.PathLike, data=None, resume: bool = False,
          progress: bool = True, extra_callbacks=()) -> dict:
    """Run (or resume) a training run in folder ``out``; returns the results dict."""
    from npembed.datasets import load_imdb_subwords8k
    out = Path(out)
    config = prepare_run_folder(out, config, resume)
    config.validate()
    dataset = data if hasattr(data, "encoder") else load_imdb_subwords8k(data, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG, json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    model = build_model(config, dataset.encoder.vocab_size)
    history = History()
    early = EarlyStopping(config.early_stopping) if config.early_stopping else None
    initial_epoch = 0
    if resume and (out / CHECKPOINT).is_file():
        state, extra = load_checkpoint(out / CHECKPOINT, model)
        initial_epoch = state["epoch"]
        history.history, history.epoch = state["history"], list(range(initial_epoch))
        if early:
            early.restore(state.get("early_stopping"), extra)
        if state.get("stopped_early"):
            initial_epoch = config.epochs
        _say(progress, f"resuming {out} at epoch {initial_epoch + 1} of {config.epochs}")

    train_batches = dataset.train.batches(config.batch_size, config.shuffle_buffer, seed=config.seed)
    val_batches = dataset.test.batches(config.batch_size, config.shuffle_buffer, seed=config.seed + 1)
    train_batches.next_epoch = val_batches.next_epoch = initial_epoch
    steps = min(len(train_batches), config.steps_per_epoch or len(train_batches))
    callbacks = [*([early] if early else []), _Checkpointer(out, history, early),
                 *([_ProgressBar(steps, config.epochs)] if progress else []), *extra_callbacks]
    start = time.perf_counter()
    try:
        model.fit(train_batches, epochs=config.epochs, validation_data=val_batches,
                  validation_steps=config.validation_steps, steps_per_epoch=config.steps_per_epoch,
                  callbacks=callbacks, initial_epoch=initial_epoch, verbose=0, history=history)
    except NonFiniteLossError as err:
        raise RunError(f"training diverged: {err} The last good checkpoint is kept in {out / CHECKPOINT}.") from err
    train_seconds = time.perf_counter() - start
    if early and early.best_weights is not None:
        model.set_weights(early.best_weights)
        _say(progress, f"early stopping: restored the weights of epoch {early.best_epoch + 1} "
                       f"(val_loss {early.best:.4f})")
    return finish_run(out, model, dataset, config, history.history, train_seconds, progress)


def finish_run(out: Path, model, dataset, config: TrainConfig, history: dict, train_seconds: float,
               progress: bool) -> dict:
    """Evaluate on the whole test set, write history, figures, projector files and results."""
    from npembed.export import write_projector_files
    # Without masking the average includes padding, so the result depends on how much padding a
    # batch has: evaluate with the training batch size (as the validation during training did).
    test_batches = dataset.test.batches(config.batch_size, shuffle_buffer=None)
    start = time.perf_counter()
    test = model.evaluate(test_batches)
    eval_seconds = time.perf_counter() - start
    _say(progress, f"full test set ({len(dataset.test):,} reviews, batch {config.batch_size}): "
                   f"loss {test['loss']:.4f} - accuracy {test['accuracy']:.4f}")
    results = {"test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_reviews": len(dataset.test),
               "epochs_run": len(history.get("loss", [])), "train_seconds_this_session": round(train_seconds, 2),
               "test_eval_seconds": round(eval_seconds, 2)}
    atomic_write_text(out / "history.json", json.dumps(history, indent=2) + "\n")
    keys = list(history)
    rows = [",".join(["epoch", *keys])]
    rows += [",".join([str(i + 1), *(f"{history[k][i]:.6f}" for k in keys)]) for i in range(len(history["loss"]))]
    atomic_write_text(out / "history.csv", "\n".join(rows) + "\n")
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_projector_files(out, model.weights[0], dataset.encoder.subwords)
    save_final_weights(out, model)
    dataset.encoder.save_to_file(out / "vocab")
    try:
        from npembed.plots import plot_history
        plot_history(history, "loss", out / "loss.png")
        plot_history(history, "accuracy", out / "accuracy.png")
    except ImportError as err:
        _say(progress, f"skipped the figures: {err}")
    return results


WEIGHTS = "weights.npz"


def save_final_weights(out: Path, model) -> None:
    """The weights the run ends with (the best epoch's under early stopping), Keras order."""
    from npembed.atomic import atomic_save_npz
    atomic_save_npz(out / WEIGHTS, **{name.replace("/", "__"): w for name, w in zip(model.weight_names, model.weights)})


def load_run(run: str | os.PathLike):
    """(model, config, encoder) of a finished run folder, for evaluate/predict/neighbors/grads."""
    from npembed.datasets import SubwordEncoder
    run = Path(run)
    if not (run / CONFIG).is_file():
        raise RunError(f"{run} is not an npembed run folder (no {CONFIG}); train one with "
                       "`npembed train --out RUN`")
    config = TrainConfig(**json.loads((run / CONFIG).read_text()))
    if not (run / WEIGHTS).is_file():
        raise RunError(f"run {run} has not finished (no {WEIGHTS}); resume it with "
                       f"`npembed train --out {run} --resume`")
    encoder = SubwordEncoder.load_from_file(run / "vocab.subwords")
    model = build_model(config, encoder.vocab_size)
    with np.load(run / WEIGHTS) as data:
        model.set_weights([data[name.replace("/", "__")] for name in model.weight_names])
    return model, config, encoder


class EarlyStopping(Callback):
    """Stop when val_loss has not improved for ``patience`` epochs; keep the best weights."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = np.inf
        self.best_epoch = -1
        self.wait = 0
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch, logs):
        if logs["val_loss"] < self.best:
            self.best, self.best_epoch, self.wait = logs["val_loss"], epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def state(self) -> tuple[dict, dict]:
        arrays = {f"best_{i}": w for i, w in enumerate(self.best_weights or [])}
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}, arrays

    def restore(self, state: dict | None, arrays: dict) -> None:
        if not state:
            return
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        count = len([k for k in arrays if k.startswith("best_")])
        self.best_weights = [arrays[f"best_{i}"] for i in range(count)] or None


class _Checkpointer(Callback):
    """Write the checkpoint atomically at the end of every epoch."""

    def __init__(self, out: Path, history: History, early: EarlyStopping | None):
        self.out, self.history, self.early = out, history, early

    def on_epoch_end(self, epoch, logs):
        state = {"epoch": epoch + 1, "history": self.history.history,
                 "stopped_early": bool(self.model.stop_training)}
        arrays = {}
        if self.early:
            state["early_stopping"], arrays = self.early.state()
        save_checkpoint(self.out / CHECKPOINT, self.model, state, arrays)


class _ProgressBar(Callback):
    """A tqdm bar per epoch (steps, time per step, running loss and accuracy), then a
    Keras-like summary line."""

    def __init__(self, steps: int, epochs: int):
        self.steps, self.epochs = steps, epochs
        self.bar = None

    def on_epoch_begin(self, epoch):
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
            return
        self.bar = tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}", unit="step",
                        file=sys.stderr, leave=False, mininterval=0.5,
                        disable=None)           # no bar when stderr is not a terminal
        self.start = time.perf_counter()

    def on_train_batch_end(self, step, logs):
        if self.bar is not None:
            self.bar.update(1)
            if step % 50 == 0:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", accuracy=f"{logs['accuracy']:.4f}")

    def on_epoch_end(self, epoch, logs):
        elapsed = time.perf_counter() - self.start if self.bar is not None else float("nan")
        if self.bar is not None:
            self.bar.close()
        summary = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())
        print(f"Epoch {epoch + 1}/{self.epochs} - {elapsed:.1f}s "
              f"({1000 * elapsed / self.steps:.2f} ms/step) - {summary}", flush=True)


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(f"npembed: {message}", file=sys.stderr, flush=True)
