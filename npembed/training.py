"""The main job: train a model (``--model``, the tutorial's by default), checkpoint every epoch,
export and plot.

A run folder holds::

    config.json                 the options of the run, and its vocabulary's checksum
    vocab.subwords              the vocabulary (see runfolder.py: what is locked and checked)
    checkpoint.npz              weights, optimizer state, epoch, history (atomic, every epoch)
    history.json, history.csv   per-epoch loss, accuracy, val_loss, val_accuracy
    results.json                full-test-set evaluation, timings
    loss.png, accuracy.png      the tutorial's two figures
    vecs.tsv, meta.tsv          the Embedding Projector files (tutorial format)
    projector_config.pbtxt      so that `tensorboard --logdir RUN` shows the projector
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from npembed import kernels, plots
from npembed.atomic import atomic_save_npz, atomic_write_text
from npembed.checkpoint import check_arrays, load_checkpoint, save_checkpoint
from npembed.config import TrainConfig, build_model, unknown_options_message
from npembed.datasets import load_imdb_subwords8k
from npembed.errors import DivergedError, NonFiniteLossError, RunFolderError, UsageError
from npembed.export import write_projector_files
from npembed.loop import Callback, History
from npembed.models import model_module
from npembed.runfolder import (CHECKPOINT, CONFIG, WEIGHTS, check_vocabulary, load_run, read_config,
                               training_lock, write_run_start)

__all__ = ["TrainConfig", "train", "load_run", "build_model", "EarlyStopping"]


def train(config: TrainConfig | dict | None, out: str | os.PathLike, data=None, resume: bool = False,
          progress: bool = True, extra_callbacks=()) -> dict:
    """Run (or resume) a training run in folder ``out``; returns the results dict.

    A new run needs ``config``: a TrainConfig, or a dict of options by name (``model`` among
    them; ``TrainConfig.for_model`` fills in the model's defaults).  On ``resume`` the run's own
    config.json decides; ``config`` may then say which options the caller asked for (a dict of
    some options, or a whole TrainConfig): ``epochs`` may differ (not below the epochs done),
    any other difference, and any name that is no option, is refused rather than ignored.  The
    run folder is locked for the whole call.
    """
    out = Path(out)
    if isinstance(config, dict) and not resume:
        config = TrainConfig.for_model(**config)
    if not resume:
        if config is None:
            raise UsageError("a new run needs a TrainConfig")
        config.validate()
    with training_lock(out, resume):
        if resume:
            saved, recorded = read_config(out)
            asked = config.flat() if isinstance(config, TrainConfig) else dict(config or {})
            config = _resumed_config(saved, asked, out)
        dataset = data if hasattr(data, "encoder") else load_imdb_subwords8k(data, progress=progress)
        if resume:
            check_vocabulary(out, recorded.get("vocab_sha256"), dataset.encoder, "this data")
        return _train_locked(config, out, dataset, resume, progress, extra_callbacks)


def _resumed_config(saved: TrainConfig, asked: dict, out: Path) -> TrainConfig:
    options = saved.flat()
    asked = {key: value for key, value in asked.items() if key != "model_options"}
    unknown = [key for key in asked if key not in options]
    if unknown:
        raise UsageError(f"--resume continues run {out}: {unknown_options_message(unknown, saved.model)}")
    differ = [f"--{key.replace('_', '-')} {value!r} (the run has {options[key]!r})"
              for key, value in asked.items() if key != "epochs" and options[key] != value]
    if differ:
        raise UsageError(f"--resume continues run {out} with its own options; these differ: "
                         f"{'; '.join(differ)}. Only --epochs may change; start a new run in another "
                         "--out for other options")
    if asked.get("epochs") is not None:
        saved.epochs = asked["epochs"]
        saved.validate()
    return saved


def _train_locked(config: TrainConfig, out: Path, dataset, resume: bool, progress: bool, extra_callbacks) -> dict:
    module = model_module(config.model)
    train_split, val_split, test_split = module.splits(config, dataset, progress)
    train_batches = train_split.batches(config.batch_size, config.shuffle_buffer, seed=config.seed)
    steps = min(len(train_batches), config.steps_per_epoch or len(train_batches))
    model = build_model(config, dataset.encoder.vocab_size, steps)
    history = History()
    early = EarlyStopping(config.early_stopping) if config.early_stopping else None
    initial_epoch = 0
    if resume and (out / CHECKPOINT).is_file():
        state, extra = load_checkpoint(out / CHECKPOINT, model)
        initial_epoch = state["epoch"]
        _note_backend(progress, out, state.get("kernels"))
        if config.epochs < initial_epoch:
            raise UsageError(f"--epochs {config.epochs} is fewer than the {initial_epoch} epochs run "
                             f"{out} has done: pass --epochs {initial_epoch} or more")
        history.history, history.epoch = state["history"], list(range(initial_epoch))
        if early:
            early.restore(state.get("early_stopping"), extra, model, out / CHECKPOINT)
        if state.get("stopped_early"):
            _say(progress, f"{out} stopped early after epoch {initial_epoch}: nothing left to train; "
                           "finishing the run")
            initial_epoch = config.epochs
        elif initial_epoch == config.epochs:
            _say(progress, f"{out} has run all its {config.epochs} epochs: finishing the run")
        else:
            _say(progress, f"resuming {out} at epoch {initial_epoch + 1} of {config.epochs}")
    elif resume:
        _say(progress, f"{out} has no checkpoint yet (no epoch finished): starting at epoch 1")
    if not resume or _saved_epochs(out) != config.epochs:
        write_run_start(out, config, dataset.encoder)

    val_batches = None if val_split is None else val_split.batches(config.batch_size, config.shuffle_buffer,
                                                                   seed=config.seed + 1)
    train_batches.next_epoch = initial_epoch
    if val_batches is not None:
        val_batches.next_epoch = initial_epoch
    callbacks = [*([early] if early else []), _Checkpointer(out, history, early),
                 *([_ProgressBar(steps, config.epochs)] if progress else []), *extra_callbacks]
    start = time.perf_counter()
    try:
        model.fit(train_batches, epochs=config.epochs, validation_data=val_batches,
                  validation_steps=config.validation_steps, steps_per_epoch=config.steps_per_epoch,
                  callbacks=callbacks, initial_epoch=initial_epoch, verbose=0, history=history,
                  step=module.fit_step(config))
    except NonFiniteLossError as err:
        if (out / CHECKPOINT).is_file():
            kept = f"the checkpoint of the last good epoch is kept in {out / CHECKPOINT}"
        else:
            kept = "no epoch finished, so there is no checkpoint"
        raise DivergedError(f"training diverged: {err} {kept}. Start a new run (another --out) "
                            "with a lower --learning-rate.") from err
    train_seconds = time.perf_counter() - start
    if early and early.best_weights is not None:
        model.set_weights(early.best_weights)
        _say(progress, f"early stopping: restored the weights of epoch {early.best_epoch + 1} "
                       f"(val_loss {early.best:.4f})")
    return finish_run(out, model, dataset, config, history.history, train_seconds, progress, test_split)


def _note_backend(progress: bool, out: Path, written_with: str | None) -> None:
    """One line when the checkpoint was written under the other kernel backend: the two agree
    within a few ulps per step, not bit for bit, so the resumed run will not be bit-identical."""
    if written_with is not None and written_with != kernels.backend():
        _say(progress, f"note: {out} was trained so far with the {written_with} kernels and resumes "
                       f"with the {kernels.backend()} ones; the result will be close but not "
                       "bit-identical to a run on one backend")


def run_splits(config: TrainConfig, dataset, progress: bool = False):
    """(train, validation or None, test) splits of a run, as its model module prepares them."""
    return model_module(config.model).splits(config, dataset, progress)


def _saved_epochs(out: Path) -> int | None:
    try:
        return json.loads((out / CONFIG).read_text())["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def finish_run(out: Path, model, dataset, config: TrainConfig, history: dict, train_seconds: float,
               progress: bool, test_split=None) -> dict:
    """Evaluate on the whole test set (``test_split``, default ``dataset.test``), write history,
    figures, projector files and results."""
    test_split = dataset.test if test_split is None else test_split
    # Without masking the average includes padding, so the result depends on how much padding a
    # batch has: evaluate with the training batch size (as the validation during training did).
    test_batches = test_split.batches(config.batch_size, shuffle_buffer=None)
    start = time.perf_counter()
    test = model.evaluate(test_batches)
    eval_seconds = time.perf_counter() - start
    _say(progress, f"full test set ({len(test_split):,} reviews, batch {config.batch_size}): "
                   f"loss {test['loss']:.4f} - accuracy {test['accuracy']:.4f}")
    results = {"test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_reviews": len(test_split),
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
    try:
        plots.plot_history(history, "loss", out / "loss.png")
        plots.plot_history(history, "accuracy", out / "accuracy.png")
    except ImportError as err:
        _say(progress, f"skipped the figures: {err}")
    return results


def save_final_weights(out: Path, model) -> None:
    """The weights the run ends with (the best epoch's under early stopping), Keras order."""
    atomic_save_npz(out / WEIGHTS, **{name.replace("/", "__"): w for name, w in zip(model.weight_names, model.weights)})


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
            if self.best_weights is None:
                self.best_weights = self.model.get_weights()
            else:       # into the copies already held: never two copies of a 2M-row table at once
                for kept, live in zip(self.best_weights, self.model.weights):
                    np.copyto(kept, live)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def state(self) -> tuple[dict, dict]:
        arrays = {f"best_{i}": w for i, w in enumerate(self.best_weights or [])}
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}, arrays

    def restore(self, state: dict | None, arrays: dict, model, path) -> None:
        """Take back :meth:`state` from a checkpoint at ``path`` (checked against ``model``)."""
        if not state:
            return
        try:
            self.best, self.best_epoch, self.wait = float(state["best"]), int(state["best_epoch"]), int(state["wait"])
        except (KeyError, TypeError, ValueError) as err:
            raise RunFolderError(f"{path}: its early-stopping record is damaged ({err})") from err
        if any(key.startswith("best_") for key in arrays):
            keys = [f"best_{i}" for i in range(len(model.weights))]
            self.best_weights = check_arrays(path, arrays, keys, model.weights, "best weight")


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
    Keras-like summary line: the epoch's seconds (validation and checkpoint included), the
    training steps' seconds and their time per step."""

    def __init__(self, steps: int, epochs: int):
        self.steps, self.epochs = steps, epochs
        self.bar = None

    def on_epoch_begin(self, epoch):
        self.start = self.trained = time.perf_counter()
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
            return
        self.bar = tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}", unit="step",
                        file=sys.stderr, leave=False, mininterval=0.5,
                        disable=None)           # no bar when stderr is not a terminal

    def on_train_batch_end(self, step, logs):
        self.trained = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
            if step % 50 == 0:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", accuracy=f"{logs['accuracy']:.4f}")

    def on_epoch_end(self, epoch, logs):
        now = time.perf_counter()
        elapsed, training = now - self.start, self.trained - self.start
        if self.bar is not None:
            self.bar.close()
        summary = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())
        # one precision for both: rounding keeps the part (training) no larger than the total
        print(f"Epoch {epoch + 1}/{self.epochs} - {elapsed:.2f}s (training {training:.2f}s, "
              f"{1000 * training / self.steps:.2f} ms/step) - {summary}", flush=True)


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(f"npembed: {message}", file=sys.stderr, flush=True)
