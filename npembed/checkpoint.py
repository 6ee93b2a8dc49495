"""Atomic save and load of everything a run needs to resume: weights, optimizer state, progress.

One ``.npz`` per checkpoint: the weights (Keras order), the optimizer's step count and state
(Adam's moments ``m_i``/``v_i``, row-wise Adagrad's accumulators ``a_i``), and a
JSON document with the epoch reached, the history so far, the run's config and any callback
state (early stopping's best weights live in arrays beside it).  The batches' order needs no
saved RNG state: epoch e's order is a pure function of (seed, e) (datasets.batching.Batches).

Loading checks everything before the model is touched: the file reads as an ``.npz`` of plain
arrays, the keys are there, each weight and moment has the model's shape and dtype and is
finite, and the progress document is consistent.  Any failure is a :class:`CheckpointError`
that names the file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from npembed.optimizers import SGD, RowwiseAdagrad

from npembed.atomic import atomic_save_npz
from npembed.errors import DamagedFileError

FORMAT = 1


class CheckpointError(DamagedFileError):
    """A checkpoint or weights file is missing, unreadable or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, model, state: dict, extra_arrays: dict | None = None) -> None:
    """Write ``path`` atomically: the model's weights and optimizer state, plus ``state`` (JSON)."""
    arrays = {f"weight_{i}": w for i, w in enumerate(model.weights)}
    optimizer = model.optimizer
    if optimizer is not None and optimizer.momentums:
        arrays.update({f"m_{i}": m for i, m in enumerate(optimizer.momentums)})
        arrays.update({f"v_{i}": v for i, v in enumerate(optimizer.velocities)})
    if isinstance(optimizer, RowwiseAdagrad) and optimizer.accumulators:
        arrays.update({f"a_{i}": a for i, a in enumerate(optimizer.accumulators)})
    for key, value in (extra_arrays or {}).items():
        arrays[f"extra_{key}"] = value
    document = {"format": FORMAT, "iterations": optimizer.iterations if optimizer else 0,
                "weight_names": model.weight_names, **state}
    arrays["state_json"] = np.frombuffer(json.dumps(document).encode("utf-8"), dtype=np.uint8)
    atomic_save_npz(path, **arrays)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, or CheckpointError naming the file.

    A damaged ``.npz`` fails in many ways inside zipfile and NumPy (BadZipFile, EOFError, a
    CRC error, zlib.error, ValueError for a bad header, MemoryError for a header that claims a
    huge shape, ...); all of them mean the same thing here, so all are caught, in this one place.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as err:            # noqa: BLE001 - see the docstring
        raise CheckpointError(f"{path} is damaged or not an npembed file: it does not read as an "
                              f".npz of arrays ({type(err).__name__}: {err})") from err


def check_arrays(path, arrays: dict, keys: list[str], like: list[np.ndarray], what: str) -> list[np.ndarray]:
    """``arrays[key]`` for each key, each checked to have the shape and dtype of its twin in
    ``like`` and only finite values; CheckpointError naming ``path`` otherwise."""
    checked = []
    for key, reference in zip(keys, like):
        if key not in arrays:
            raise CheckpointError(f"{path} has no {what} {key!r}: it is damaged or was written for "
                                  "another model")
        value = arrays[key]
        if value.shape != reference.shape or value.dtype != reference.dtype:
            raise CheckpointError(f"{path}: {what} {key!r} has shape {value.shape} and dtype {value.dtype}, "
                                  f"the model needs {reference.shape} {reference.dtype}: was it written "
                                  "with other options or another vocabulary?")
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: {what} {key!r} holds NaN or infinite values; the file is "
                                  "damaged or the run diverged")
        checked.append(value)
    return checked


def load_checkpoint(path: str | os.PathLike, model) -> tuple[dict, dict]:
    """Restore weights and optimizer state into ``model``; return (state, extra_arrays)."""
    arrays = read_npz(path)
    try:
        document = json.loads(arrays.pop("state_json").tobytes().decode("utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path} has no readable progress record ({err}): it is damaged") from err
    if document.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {document.get('format')}, this npembed "
                              f"reads format {FORMAT}")
    if document.get("weight_names") != model.weight_names:
        raise CheckpointError(f"checkpoint {path} holds weights {document.get('weight_names')}, the model "
                              f"has {model.weight_names}: was it written with other options?")
    _check_progress(path, document)
    count = len(model.weights)
    weights = check_arrays(path, arrays, [f"weight_{i}" for i in range(count)], model.weights, "weight")
    optimizer_state = _optimizer_state(path, arrays, document, model)
    model.set_weights(weights)
    if optimizer_state is not None:
        model.optimizer.set_state(optimizer_state)
    extra = {key[len("extra_"):]: value for key, value in arrays.items() if key.startswith("extra_")}
    return document, extra


def _optimizer_state(path, arrays: dict, document: dict, model) -> dict | None:
    """The checked state of ``model.optimizer`` from the file (None: nothing to restore), or
    CheckpointError when the file's state belongs to another optimizer or is missing."""
    optimizer, count = model.optimizer, len(model.weights)
    written = "Adam" if "m_0" in arrays else "RowwiseAdagrad" if "a_0" in arrays else None
    if optimizer is None:
        return None
    mine = type(optimizer).__name__
    if written is not None and written != mine:
        raise CheckpointError(f"{path} holds the state of {written}, this model trains with {mine}: "
                              "was it written with another --optimizer?")
    iterations = document["iterations"]
    if isinstance(optimizer, RowwiseAdagrad):
        if written is None:
            if iterations > 0:
                raise CheckpointError(f"{path} has no Adagrad accumulators after {iterations} steps: "
                                      "it is damaged")
            return None
        like = [np.empty(shape, dtype=w.dtype)
                for shape, w in zip(RowwiseAdagrad.accumulator_shapes(model.weights), model.weights)]
        accumulators = check_arrays(path, arrays, [f"a_{i}" for i in range(count)], like, "Adagrad accumulator")
        if any(np.any(a < 0) for a in accumulators):
            raise CheckpointError(f"{path}: an Adagrad accumulator is negative: the file is damaged")
        return {"iterations": iterations, "momentums": [], "velocities": [], "accumulators": accumulators}
    if isinstance(optimizer, SGD):                  # no moments: only its step count (its decay)
        return {"iterations": iterations, "momentums": [], "velocities": []}
    if written is None:
        return None
    moments = check_arrays(path, arrays, [f"m_{i}" for i in range(count)], model.weights, "Adam moment")
    velocities = check_arrays(path, arrays, [f"v_{i}" for i in range(count)], model.weights, "Adam moment")
    if any(np.any(v < 0) for v in velocities):
        raise CheckpointError(f"{path}: an Adam second moment is negative: the file is damaged")
    return {"iterations": iterations, "momentums": moments, "velocities": velocities}


def _check_progress(path, document: dict) -> None:
    epoch, iterations, history = document.get("epoch"), document.get("iterations"), document.get("history")
    valid = (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1
             and isinstance(iterations, int) and not isinstance(iterations, bool) and iterations >= 0
             and isinstance(history, dict)
             and all(isinstance(values, list) and len(values) == epoch for values in history.values()))
    if not valid:
        raise CheckpointError(f"{path}: its progress record (epoch {epoch!r}, iterations {iterations!r}, "
                              "history) is inconsistent: the file is damaged")
