"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Write to a temporary file in the same folder, flush and fsync it, then ``os.replace`` it over
the target (atomic on POSIX and Windows).  The temporary file is named
``.<name>.tmp-<pid>-<random>``; a process killed mid-write leaves it behind, and the next write
of the same target removes those whose writer is dead (:func:`remove_stale_temporaries`).
The new file gets the permissions of a plain ``open()``: 0666 less the umask.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

# .<target>.tmp-<pid>-<random>; older npembed wrote .<target>.tmp-<random> (no pid).
_TEMPORARY = re.compile(r"^\.(?P<target>.+?)\.tmp-(?:(?P<pid>\d+)-)?[^/]*$")
_umask_lock = threading.Lock()
NAME_MAX = 255                          # bytes in one file name, on every common Linux file system


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """``with atomic_open(path) as handle:`` write; the file appears at ``path`` only on success."""
    with _temporary_beside(path) as (fd, tmp):
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically (no ``.npz`` is appended to the name)."""
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def atomic_write_with(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """For writers that need a path (matplotlib's savefig): ``write(tmp_path)``, then rename."""
    with _temporary_beside(path, suffix=os.path.splitext(os.fspath(path))[1]) as (fd, tmp):
        os.close(fd)
        write(tmp)


@contextlib.contextmanager
def _temporary_beside(path: str | os.PathLike, suffix: str = ""):
    """Yield (fd, tmp path) of a fresh temporary file beside ``path``; on a clean exit give it
    the umask's permissions and rename it over ``path``, else remove it.  An OSError without a
    file name (ENOSPC from write or fsync) is raised again naming ``path``."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder, target=name)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{_temporary_stem(name)}.tmp-{os.getpid()}-",
                                   suffix=suffix[:16])
    except OSError as err:
        raise _naming(err, path) from None
    try:
        yield fd, tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not err.filename:
            raise _naming(err, path) from None
        raise


def _naming(err: OSError, path: str) -> OSError:
    """``err`` with ``path`` as its file name (the same OSError subclass, errno and reason)."""
    if err.filename:
        return err
    return OSError(err.errno, err.strerror or str(err), path)


def _temporary_stem(name: str) -> str:
    """The part of a temporary file's name that names its target: ``name`` itself, or, where
    ``.<name>.tmp-<pid>-<random><suffix>`` would pass NAME_MAX, its start and a hash of it."""
    room = NAME_MAX - len(".tmp-4194304-12345678") - 1 - 16      # pid up to 2**22, mkstemp's 8, suffix
    encoded = os.fsencode(name)
    if len(encoded) <= room:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return encoded[:room - 17].decode("utf-8", "ignore") + "~" + digest


def writable_folder(folder: str | os.PathLike, what: str = "folder") -> Path:
    """Create ``folder`` if needed and prove a file can be written in it, or raise
    UnwritableError saying why: checked before any long work whose results it will hold."""
    from npembed.errors import UnwritableError
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UnwritableError(f"{what} {folder} is a file, not a folder: choose another path") from None
    except NotADirectoryError:
        raise UnwritableError(f"{what} {folder} lies under a file, not a folder: choose another "
                              "path") from None
    except OSError as err:
        raise UnwritableError(f"cannot create {what} {folder}: {err.strerror}") from None
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UnwritableError(f"cannot write in {what} {folder}: {err.strerror}") from None
    return folder


def remove_stale_temporaries(folder: str | os.PathLike, target: str | None = None,
                             any_writer: bool = False) -> list[Path]:
    """Remove the temporary files in ``folder`` (of ``target`` only, if given) left by killed
    writers; ``any_writer=True`` also removes live writers' (only for a caller holding the
    folder's lock, which no other writer can then hold).  Returns what was removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.match(name)
        if not match or (target is not None and match["target"] != _temporary_stem(target)):
            continue
        if any_writer or (match["pid"] is not None and not _alive(int(match["pid"]))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
                removed.append(Path(folder) / name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _umask() -> int:
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask
