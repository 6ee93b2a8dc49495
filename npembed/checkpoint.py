"""Atomic save and load of everything a run needs to resume: weights, Adam state, progress.

One ``.npz`` per checkpoint: the weights (Keras order), Adam's step count and moments, and a
JSON document with the epoch reached, the history so far, the run's config and any callback
state (early stopping's best weights live in arrays beside it).  The batches' order needs no
saved RNG state: epoch e's order is a pure function of (seed, e) (datasets.batching.Batches).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from npembed.atomic import atomic_save_npz

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, model, state: dict, extra_arrays: dict | None = None) -> None:
    """Write ``path`` atomically: the model's weights and optimizer state, plus ``state`` (JSON)."""
    arrays = {f"weight_{i}": w for i, w in enumerate(model.weights)}
    optimizer = model.optimizer
    if optimizer is not None and optimizer.momentums:
        arrays.update({f"m_{i}": m for i, m in enumerate(optimizer.momentums)})
        arrays.update({f"v_{i}": v for i, v in enumerate(optimizer.velocities)})
    for key, value in (extra_arrays or {}).items():
        arrays[f"extra_{key}"] = value
    document = {"format": FORMAT, "iterations": optimizer.iterations if optimizer else 0,
                "weight_names": model.weight_names, **state}
    arrays["state_json"] = np.frombuffer(json.dumps(document).encode("utf-8"), dtype=np.uint8)
    atomic_save_npz(path, **arrays)


def load_checkpoint(path: str | os.PathLike, model) -> tuple[dict, dict]:
    """Restore weights and optimizer state into ``model``; return (state, extra_arrays)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable ({err}); it was not written by "
                              "npembed or is damaged") from err
    document = json.loads(arrays.pop("state_json").tobytes().decode("utf-8"))
    if document.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {document.get('format')}, this npembed "
                              f"reads format {FORMAT}")
    if document["weight_names"] != model.weight_names:
        raise CheckpointError(f"checkpoint {path} holds weights {document['weight_names']}, the model "
                              f"has {model.weight_names}: was it written with other options?")
    count = len(model.weights)
    model.set_weights([arrays[f"weight_{i}"] for i in range(count)])
    if model.optimizer is not None and "m_0" in arrays:
        model.optimizer.set_state({"iterations": document["iterations"],
                                   "momentums": [arrays[f"m_{i}"] for i in range(count)],
                                   "velocities": [arrays[f"v_{i}"] for i in range(count)]})
    extra = {key[len("extra_"):]: value for key, value in arrays.items() if key.startswith("extra_")}
    return document, extra
