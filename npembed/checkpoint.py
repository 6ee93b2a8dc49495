"""Atomic save and load of everything a run needs to resume: weights, optimizer state, progress.

One ``.npz`` per checkpoint (format 2): the weights ``weight_i`` (Keras order); the optimizer's
``state()`` as it returns it (its arrays under their own keys, Adam's ``m_i``/``v_i``, row-wise
Adagrad's ``a_i``; its numbers in the JSON document, with the optimizer's class and the list of
its array keys); and a JSON document with the epoch reached, the history so far, the kernel
backend that wrote it, the layers' own state (``Layer.state()``: a Dropout's draw count) and any
callback state (early stopping's best weights live in arrays ``extra_*`` beside it).  The
batches' order needs no saved RNG state: epoch e's order is a pure function of (seed, e) (datasets.batching.Batches).

Loading checks everything before the model is touched: the file reads as an ``.npz`` of plain
arrays, the keys are there, each weight and moment has the model's shape and dtype and is
finite, the optimizer is the one that wrote the state (and takes it: ``load_state`` checks
it), and the progress document is consistent.  Any failure is a :class:`CheckpointError` that
names the file; a checkpoint of another format (format 1, written before optimizers gave their
own state) is refused by name, never read by guessing.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np

from npembed import kernels
from npembed.atomic import atomic_save_npz
from npembed.checks import is_integer
from npembed.errors import DamagedFileError

FORMAT = 2
RESERVED = ("weight_", "extra_", "state_json")      # the optimizer's keys may not start so


class CheckpointError(DamagedFileError):
    """A checkpoint or weights file is missing, unreadable or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, model, state: dict, extra_arrays: dict | None = None) -> None:
    """Write ``path`` atomically: the model's weights and optimizer state, plus ``state`` (JSON)."""
    arrays = {f"weight_{i}": w for i, w in enumerate(model.weights)}
    optimizer = model.optimizer
    optimizer_state = optimizer.state() if optimizer is not None else {}
    numbers = {key: value for key, value in optimizer_state.items() if not isinstance(value, np.ndarray)}
    optimizer_arrays = {key: value for key, value in optimizer_state.items() if isinstance(value, np.ndarray)}
    if any(key.startswith(RESERVED) for key in optimizer_arrays):
        raise ValueError(f"optimizer state keys {sorted(optimizer_arrays)} clash with the checkpoint's own")
    arrays.update(optimizer_arrays)
    for key, value in (extra_arrays or {}).items():
        arrays[f"extra_{key}"] = value
    document = {"format": FORMAT, "iterations": optimizer.iterations if optimizer else 0,
                "weight_names": model.weight_names, "kernels": kernels.backend(),
                "optimizer": type(optimizer).__name__ if optimizer is not None else None,
                "optimizer_numbers": numbers, "optimizer_arrays": sorted(optimizer_arrays),
                "layer_state": {layer.name: layer.state() for layer in model.layers if layer.state()}, **state}
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
    """Restore weights and optimizer state into ``model``; return (state, extra_arrays).
    ``state["kernels"]`` is the kernel backend that wrote the checkpoint."""
    arrays = read_npz(path)
    try:
        document = json.loads(arrays.pop("state_json").tobytes().decode("utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path} has no readable progress record ({err}): it is damaged") from err
    if document.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {document.get('format')!r}, this npembed "
                              f"reads format {FORMAT} only (format 1 was written before each optimizer "
                              "gave its own state): start a new run, or finish this one with the npembed "
                              "that wrote it")
    if document.get("weight_names") != model.weight_names:
        raise CheckpointError(f"checkpoint {path} holds weights {document.get('weight_names')}, the model "
                              f"has {model.weight_names}: was it written with other options?")
    _check_progress(path, document)
    count = len(model.weights)
    weights = check_arrays(path, arrays, [f"weight_{i}" for i in range(count)], model.weights, "weight")
    if model.optimizer is None and document.get("optimizer") is not None:
        raise CheckpointError(f"{path} holds the state of {document['optimizer']} too: compile the model "
                              "with that optimizer before loading it (or load weights.npz for the weights alone)")
    layer_states = _checked_layer_states(path, document, model)
    if model.optimizer is not None:
        _load_optimizer_state(path, arrays, document, model)
    model.set_weights(weights)
    for layer in model.layers:
        layer.load_state(layer_states.get(layer.name, {}))
    extra = {key[len("extra_"):]: value for key, value in arrays.items() if key.startswith("extra_")}
    return document, extra


def _load_optimizer_state(path, arrays: dict, document: dict, model) -> None:
    """Hand the file's optimizer state to ``model.optimizer.load_state`` (which checks it
    against the weights before it keeps any of it), or CheckpointError: written by another
    optimizer, listed arrays missing, or a state the optimizer refuses."""
    optimizer = model.optimizer
    written, mine = document.get("optimizer"), type(optimizer).__name__
    if written != mine:
        raise CheckpointError(f"{path} holds the state of {written}, this model trains with {mine}: "
                              "was it written with another --optimizer?")
    keys, numbers = document.get("optimizer_arrays"), document.get("optimizer_numbers")
    if not (isinstance(keys, list) and isinstance(numbers, dict)):
        raise CheckpointError(f"{path}: its optimizer record is damaged")
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise CheckpointError(f"{path} lacks the optimizer arrays {missing}: it is damaged")
    state = {**numbers, **{key: arrays[key] for key in keys}}
    if state.get("iterations") != document["iterations"]:
        raise CheckpointError(f"{path}: its optimizer's step count disagrees with its progress record: "
                              "it is damaged")
    try:
        optimizer.load_state(state, model.weights)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: {err}") from err


def _checked_layer_states(path, document: dict, model) -> dict:
    """The layers' own state (a Dropout's draw count), each checked by its layer on a copy
    before any layer takes it; CheckpointError naming the file otherwise."""
    states = document.get("layer_state", {})
    layers = {layer.name: layer for layer in model.layers}
    if not isinstance(states, dict) or set(states) - set(layers):
        raise CheckpointError(f"{path}: its layer state {states!r} does not fit this model's layers "
                              f"{sorted(layers)}: it is damaged or was written for another model")
    missing = sorted(name for name, layer in layers.items() if layer.state() and name not in states)
    if missing:                             # a Dropout would silently restart its draws at 0
        raise CheckpointError(f"{path} lacks the state of layer(s) {missing}: it is damaged; resume "
                              "from a copy of the run or start a new one")
    for name, layer in layers.items():
        try:
            copy.copy(layer).load_state(states.get(name, {}))      # a trial: the layer itself waits
        except (ValueError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{path}: {err}") from err
    return states


def _check_progress(path, document: dict) -> None:
    epoch, iterations, history = document.get("epoch"), document.get("iterations"), document.get("history")
    valid = (is_integer(epoch) and epoch >= 1 and is_integer(iterations) and iterations >= 0
             and isinstance(history, dict)
             and all(isinstance(values, list) and len(values) == epoch for values in history.values()))
    if not valid:
        raise CheckpointError(f"{path}: its progress record (epoch {epoch!r}, iterations {iterations!r}, "
                              "history) is inconsistent: the file is damaged")
