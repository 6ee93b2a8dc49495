"""An exclusive lock on a folder, held for the life of the process that takes it.

``fcntl.flock`` on a ``.lock`` file inside the folder, chosen over a lock *file* (whose mere
existence is the lock, as with ``O_EXCL``) and over a library such as ``filelock`` (which takes
the same ``flock`` on POSIX) because:

- the kernel releases a ``flock`` when its holder dies, SIGKILL included: a killed run never
  leaves a stale lock behind that someone must delete by hand;
- it is the standard library, so ``import npembed`` still needs only NumPy.

The holder writes its pid, command and start time into the lock file, so that a second process
can say who holds the folder.  ``flock`` is advisory and local: it guards against other npembed
processes on this machine (the case that lost runs), not against ``rm -rf`` or an NFS peer.
Windows has no ``fcntl``; there the lock is a no-op (documented in docs/reliability.md).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from npembed.errors import BusyError

try:
    import fcntl
except ImportError:                     # Windows
    fcntl = None

LOCK_NAME = ".lock"


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike, wait: bool = False, what: str = "folder",
                  on_wait=None) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (which must exist) for the ``with`` block.

    ``wait=False``: raise :class:`BusyError` naming the holder when another process has it.
    ``wait=True``: block until it is free (``on_wait(holder)`` is called once before waiting).
    """
    path = Path(folder) / LOCK_NAME
    announced = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = describe_holder(path)
                    if not wait:
                        raise BusyError(f"{what} {folder} is in use by {holder}; wait for it to finish, "
                                        "or stop it (a killed run resumes with --resume)") from None
                    if on_wait is not None and not announced:
                        on_wait(holder)
                        announced = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        if _still_linked(fd, path):
            break
        # The holder we waited for removed the lock file (a refused start cleaning up after
        # itself): this descriptor locks a file no one else can open; take the one at the path
        # (in the folder made afresh if it went too).
        os.close(fd)
        os.makedirs(folder, exist_ok=True)
    try:
        record = {"pid": os.getpid(), "command": " ".join(sys.argv), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        yield Path(folder)
    finally:
        os.close(fd)                    # closing the last descriptor releases the flock


def _still_linked(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not unlinked or replaced meanwhile)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def describe_holder(lock_path: Path) -> str:
    """'pid 123 (npembed train --out R, since 2024-01-01 12:00:00)', or what can be said."""
    try:
        record = json.loads(lock_path.read_text(encoding="utf-8"))
        return f"pid {record['pid']} ({record['command']}, since {record['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
