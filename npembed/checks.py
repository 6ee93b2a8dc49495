"""Input checks shared by the layers, the model and the data pipeline.

Each raises ``TypeError`` or ``ValueError`` with a message that says what was wrong and what to
do.  They exist because NumPy would otherwise accept bad input silently: a negative token id
indexes from the end of the table, a float id is truncated, a (batch,) label vector broadcasts
against (batch, 1) logits into a (batch, batch) matrix.
"""
from __future__ import annotations

import numpy as np

from npembed.errors import UsageError


def check_token_ids(ids, input_dim: int) -> np.ndarray:
    """Return ``ids`` as an integer array of shape (batch, seq_len), or raise (no copy for an
    integer array: int32 ids stay int32).

    Accepts any integer array-like of rank 2 whose values lie in [0, input_dim).
    """
    try:
        ids = np.asarray(ids)
    except ValueError as err:               # ragged lists: NumPy's "inhomogeneous shape"
        raise ValueError("token ids must be a rectangular (batch, seq_len) array; reviews of "
                         "different lengths must be padded with 0 first "
                         "(npembed.datasets.pad_rows)") from err
    if ids.dtype.kind not in "iub":                 # signed, unsigned, bool (refused below)
        if ids.dtype.kind == "f" and ids.size and np.all(np.mod(ids, 1) == 0):
            hint = ". They look like whole numbers: convert with ids.astype('int64')"
        else:
            hint = ""
        raise TypeError(f"token ids must be an integer array, got dtype {ids.dtype}{hint}")
    if ids.dtype == bool:
        raise TypeError("token ids must be an integer array, got dtype bool")
    if ids.ndim != 2:
        raise ValueError(
            f"token ids must have shape (batch, seq_len), got shape {ids.shape} (rank {ids.ndim}); "
            "a single review needs a batch axis: ids[None, :]")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"empty batch: token ids have shape {ids.shape}; every batch needs at "
                         "least one review of at least one token")
    low, high = int(ids.min()), int(ids.max())
    if low < 0:
        raise ValueError(f"token ids must be >= 0, found {low} (NumPy would silently index from "
                         "the end of the table); 0 is the padding id")
    if high >= input_dim:
        raise ValueError(f"token id {high} is out of range for an Embedding with input_dim="
                         f"{input_dim} (valid ids are 0..{input_dim - 1}); was the data encoded "
                         "with a different vocabulary?")
    if ids.dtype.kind == "u" and ids.dtype.itemsize >= 8:
        ids = ids.astype(np.int64)          # np.bincount refuses uint64
    return ids


def check_labels(labels, batch_size: int) -> np.ndarray:
    """Return binary labels as a float array of shape (batch,), or raise.

    Accepts shape (batch,) or (batch, 1), values in {0, 1} (ints, bools or floats).
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != batch_size:
        raise ValueError(f"labels must have shape ({batch_size},) or ({batch_size}, 1) to match "
                         f"the batch of {batch_size} reviews, got shape {labels.shape}")
    if labels.dtype.kind not in "biufc":            # bool or a number
        raise TypeError(f"labels must be numeric 0/1 values, got dtype {labels.dtype}")
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        raise ValueError(f"labels must be 0 (negative) or 1 (positive), found {labels[bad][0].item()!r} "
                         f"at position {int(np.argmax(bad))}")
    return labels


def check_float_dtype(dtype) -> np.dtype:
    """Return ``np.float32`` or ``np.float64``, or raise for anything else."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from err
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype}")
    return dtype


def check_no_empty_rows(token_counts: np.ndarray) -> None:
    """A masked average needs at least one real token per review; ``token_counts`` (B,) or (B, 1)."""
    empty = np.flatnonzero(np.asarray(token_counts).reshape(-1) == 0)
    if empty.size:
        raise ValueError(f"row {int(empty[0])} of the batch is all padding: with mask_zero=True its "
                         "average over non-padding tokens is undefined (Keras gives NaN); "
                         "drop empty reviews before batching")


def is_integer(value) -> bool:
    """True for an int (Python or NumPy), False for a bool and anything else."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


def is_number(value) -> bool:
    """True for an int or float (Python or NumPy), False for a bool and anything else."""
    return (not isinstance(value, (bool, np.bool_))
            and isinstance(value, (int, float, np.integer, np.floating)))


def check_number(what: str, value) -> None:
    """TypeError unless ``value`` is a number and not a bool (``True`` would pass as 1)."""
    if not is_number(value):
        raise TypeError(f"{what} must be a number, got {value!r}")


def check_int_option(name: str, value, low: int, high: int | None = None) -> None:
    """``errors.UsageError`` naming ``--name`` unless ``value`` is an int (not a bool) in [low, high]."""
    if not is_integer(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise UsageError(f"--{name.replace('_', '-')} must be an integer {bound}, got {value!r}")
