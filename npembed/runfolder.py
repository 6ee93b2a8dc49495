"""A run folder: its files, the lock its trainer holds, and reading it back with checks.

    config.json        the run's options, plus the size and checksum of its vocabulary
    vocab.subwords     the vocabulary the run was trained on (written when the run starts)
    checkpoint.npz     weights, optimizer state, epoch, history (atomic, every epoch)
    weights.npz        the final weights (Keras order), written when the run finishes
    .lock              held (flock) by the process training into the folder

Everything a command reads from a run is checked on load, and every failure names the file:
config.json must hold valid options; vocab.subwords must read and match the checksum in
config.json; weights must have the model's shapes and dtypes and be finite.  A run is only used
with data of the same vocabulary (:func:`check_vocabulary`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from npembed.atomic import atomic_write_text, remove_stale_temporaries, writable_folder
from npembed.checkpoint import check_arrays, read_npz
from npembed.config import TrainConfig, build_model
from npembed.datasets import SubwordEncoder
from npembed.errors import DamagedFileError, RunFolderError, UsageError
from npembed.locks import LOCK_NAME, locked_folder

CONFIG = "config.json"
CHECKPOINT = "checkpoint.npz"
WEIGHTS = "weights.npz"
VOCAB = "vocab.subwords"
_RUN_KEYS = ("vocab_size", "vocab_sha256")     # in config.json beside the options


def vocabulary_checksum(subwords: list[str]) -> str:
    """sha256 of the subword list (order matters: ids are positions in it)."""
    return hashlib.sha256(json.dumps(subwords, ensure_ascii=False).encode("utf-8")).hexdigest()


@contextlib.contextmanager
def training_lock(out: Path, resume: bool) -> Iterator[Path]:
    """Create ``out`` if needed, hold its lock for the block, and check that it suits: empty
    (temporaries of killed writers aside) for a new run, a run folder for ``resume``."""
    existed = out.is_dir()
    lock_existed = (out / LOCK_NAME).exists()
    writable_folder(out, "run folder (--out)")
    with locked_folder(out, what="run folder"):
        try:
            remove_stale_temporaries(out, any_writer=True)      # no other writer: we hold the lock
            _check_contents(out, resume)
            yield out
        except BaseException:
            # An interruption (Ctrl-C, SIGTERM) can land between a temporary file's creation and
            # the try that removes it (atomic._temporary_beside); we hold the lock, so every
            # temporary here is ours: take them all back before letting go.
            remove_stale_temporaries(out, any_writer=True)
            _undo_start(out, existed, lock_existed)
            raise


def _undo_start(out: Path, existed: bool, lock_existed: bool) -> None:
    """After a start that failed before it wrote config.json, take back what it added: the
    lock file (unless it was there before) and the folder (if it made it and it is empty).
    Called while the lock is held; a process that opened the lock file meanwhile finds it
    unlinked when it gets the lock, and opens it afresh (locks.locked_folder)."""
    if (out / CONFIG).exists():
        return
    with contextlib.suppress(OSError):
        if not lock_existed:
            (out / LOCK_NAME).unlink()
        if not existed:
            out.rmdir()                 # only if empty


def _check_contents(out: Path, resume: bool) -> None:
    has_config = (out / CONFIG).is_file()
    if resume and not has_config:
        raise RunFolderError(f"{out} is not an npembed run folder (no {CONFIG}); start a run with "
                             f"`npembed train --out {out}` first")
    if not resume:
        if has_config:
            raise RunFolderError(f"{out} already holds a run: pass --resume to continue it, or "
                                 "choose another --out")
        # What a start killed before config.json leaves (the lock, the vocabulary) is no run.
        if any(p.name not in (LOCK_NAME, VOCAB) for p in out.iterdir()):
            raise RunFolderError(f"{out} exists and is not empty, and is not an npembed run folder: "
                                 "choose another --out")


def write_run_start(out: Path, config: TrainConfig, encoder) -> None:
    """config.json (options + vocabulary checksum) and vocab.subwords, when a run starts."""
    encoder.save_to_file(out / "vocab")
    document = {**config.to_json(), "vocab_size": encoder.vocab_size,
                "vocab_sha256": vocabulary_checksum(encoder.subwords)}
    atomic_write_text(out / CONFIG, json.dumps(document, indent=2) + "\n")


def read_config(run: Path) -> tuple[TrainConfig, dict]:
    """(options, {vocab_size, vocab_sha256} where recorded) of a run, checked."""
    path = run / CONFIG
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DamagedFileError(f"{path} is damaged: it is not valid JSON ({err})") from err
    recorded = {key: document.pop(key) for key in _RUN_KEYS if isinstance(document, dict) and key in document}
    try:
        config = TrainConfig.from_json(document)
    except (UsageError, TypeError) as err:
        raise DamagedFileError(f"{path} is damaged: {err}") from err
    except RunFolderError as err:                   # a format this npembed no longer reads
        raise RunFolderError(f"{path}: {err}") from err
    return config, recorded


def check_vocabulary(run: Path, run_checksum: str | None, encoder, against: str) -> None:
    """RunFolderError unless ``encoder`` (the data's) has the run's vocabulary, given by its
    checksum (None: a run from before checksums were recorded, not checked)."""
    if run_checksum is None or vocabulary_checksum(encoder.subwords) == run_checksum:
        return
    raise RunFolderError(f"run {run} was trained on another vocabulary than the one of {against} "
                         f"(vocab_size {encoder.vocab_size}; the checksums differ): pass the data the "
                         "run was trained on")


def open_run(run: str | os.PathLike):
    """(run folder, config, recorded, encoder) of an existing run, all checked; for commands
    that only read it."""
    run = Path(run)
    if not run.exists():
        raise RunFolderError(f"run folder {run} does not exist; train one with `npembed train --out {run}`")
    if not run.is_dir():
        raise RunFolderError(f"{run} is a file, not a run folder")
    if not (run / CONFIG).is_file():
        raise RunFolderError(f"{run} is not an npembed run folder (no {CONFIG}); train one with "
                             "`npembed train --out RUN`")
    config, recorded = read_config(run)
    return run, config, recorded, read_vocabulary(run, recorded)


def read_vocabulary(run: Path, recorded: dict):
    path = run / VOCAB
    if not path.is_file():
        raise DamagedFileError(f"{path} is missing: the run's vocabulary is needed to read its "
                               "weights; restore it from a copy of the run")
    try:
        encoder = SubwordEncoder.load_from_file(path)
    except (UnicodeDecodeError, ValueError, IndexError) as err:
        raise DamagedFileError(f"{path} is damaged: {err}") from err
    if not encoder.subwords or ("vocab_sha256" in recorded
                                and vocabulary_checksum(encoder.subwords) != recorded["vocab_sha256"]):
        raise DamagedFileError(f"{path} does not match the vocabulary recorded in {run / CONFIG} "
                               "(its checksum differs): it was changed or damaged; restore it")
    return encoder


def load_run(run: str | os.PathLike):
    """(model, config, encoder) of a finished run folder, for evaluate/predict/neighbors/grads."""
    run, config, recorded, encoder = open_run(run)
    if not (run / WEIGHTS).is_file():
        raise RunFolderError(f"run {run} has not finished (no {WEIGHTS}); resume it with "
                             f"`npembed train --out {run} --resume`")
    model = build_model(config, encoder.vocab_size)
    arrays = read_npz(run / WEIGHTS)
    keys = [name.replace("/", "__") for name in model.weight_names]
    model.set_weights(check_arrays(run / WEIGHTS, arrays, keys, model.weights, "weight"))
    return model, config, encoder
