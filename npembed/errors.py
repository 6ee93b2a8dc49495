"""The expected failures of npembed: what went wrong and what to do, and an exit code each.

Every error a user can cause or fix (a bad option, missing or damaged data, a damaged run
folder, a folder another process holds, a full disk) is an :class:`NpembedError`; the CLI prints
its message on one or two lines and exits with its ``exit_code``.  Anything else is a bug and
keeps its traceback.

Exit codes (distinct, so that scripts can tell them apart):

    2  a bad option or argument (argparse uses 2 too)
    3  the data: missing, unreadable, not in the aclImdb layout, or not the run's vocabulary
    4  a run folder: not a run, not finished, or damaged (the message names the file)
    5  busy: another process holds the run folder (the message names it)
    6  the file system: an output or cache location that cannot be written, a full disk
    7  training diverged (a non-finite loss)
"""
from __future__ import annotations

USAGE, DATA, RUN, BUSY, FILESYSTEM, DIVERGED = 2, 3, 4, 5, 6, 7


class NpembedError(Exception):
    """An expected failure; ``str(err)`` says what went wrong and what to do."""

    exit_code = USAGE


class UsageError(NpembedError, ValueError):
    """A bad option or argument."""

    exit_code = USAGE


class SetupError(NpembedError, ImportError):
    """This machine cannot do what the environment asks (NPEMBED_KERNELS=native without a
    working C compiler); an ImportError too, as the failed import it stands for."""

    exit_code = USAGE


class RunFolderError(NpembedError, ValueError):
    """A run folder that is not a run, not finished, damaged, or of other data."""

    exit_code = RUN


class DamagedFileError(RunFolderError):
    """A file npembed wrote earlier no longer reads back as what it should be."""


class BusyError(NpembedError):
    """Another process holds the lock on a run folder."""

    exit_code = BUSY


class UnwritableError(NpembedError, OSError):
    """An output or cache location that cannot be written."""

    exit_code = FILESYSTEM


class DivergedError(RunFolderError):
    """Training stopped on a non-finite loss."""

    exit_code = DIVERGED


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite (a library error, not a CLI one: ``training.train`` turns
    it into a :class:`DivergedError`).  A batch step changes no weight when it raises this; a
    per-review step (``per_review.train_step``) has changed the weights as it went."""
