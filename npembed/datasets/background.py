"""One function run in a forked child process that dies with its parent (Linux).

``npembed prepare`` cuts the test reviews into tokens in a child while it builds the vocabulary
from the train reviews, so that both cores work.  A child must never outlive ``prepare``: a
child left behind by a parent killed with SIGKILL or SIGTERM would hold its memory and, blocked
on its pipe, never end.  So the child asks the kernel to kill it when its parent dies
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``) and checks that the parent did not die before it asked.
Where that is not available (not Linux, no fork) :func:`start` runs the function in the caller.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from typing import Any, Callable

PR_SET_PDEATHSIG = 1
_ENDING_SIGNALS = {s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s}


class Background:
    """``start(fn, *args).result()`` is ``fn(*args)``, computed meanwhile in a child process."""

    def __init__(self, fn: Callable, args: tuple):
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(send, os.getpid(), fn, args), daemon=True)
        # The child starts with these signals blocked, so that none lands before it has reset
        # their handlers (_child); here a signal that came meanwhile is handled on unblocking.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING_SIGNALS)
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        send.close()                          # the child holds the only writing end: EOF if it dies

    def result(self) -> Any:
        try:
            status, value = self._receive.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(f"the background process ended without a result "
                               f"(exit code {self._process.exitcode})") from None
        finally:
            self._receive.close()
        self._process.join()
        if status == "error":
            raise value
        return value


class _Now:
    """The same interface, computed at once in this process."""

    def __init__(self, fn: Callable, args: tuple):
        self._value = fn(*args)

    def result(self) -> Any:
        return self._value


def start(fn: Callable, *args) -> Background | _Now:
    """Run ``fn(*args)`` in a child that dies with this process, or here where that is not possible."""
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods() or (os.cpu_count() or 1) < 2:
        return _Now(fn, args)
    return Background(fn, args)


def _child(send, parent: int, fn: Callable, args: tuple) -> None:
    # Ctrl-C reaches the whole process group, and the parent's exit sends SIGTERM to a daemonic
    # child: the parent reports the interruption, the child just ends. With the handlers it
    # inherited (KeyboardInterrupt, cli.Terminated) it would raise and multiprocessing would
    # print "Process ForkProcess-1: Traceback ..." after the parent's message.
    for signum in _ENDING_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _ENDING_SIGNALS)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:                # the parent died before the request was in place
        os._exit(1)
    try:
        value = ("ok", fn(*args))
    except Exception as err:                  # the parent re-raises it
        value = ("error", err)
    try:
        send.send(value)
        send.close()
    except OSError:                           # the parent stopped listening: it is ending
        os._exit(1)
