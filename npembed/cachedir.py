"""Where npembed keeps what it builds (the encoded data, the compiled kernels)."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "NPEMBED_CACHE"


def default_cache_dir() -> Path:
    """``$NPEMBED_CACHE``, else ``$XDG_CACHE_HOME/npembed``, else ``~/.cache/npembed``."""
    if os.environ.get(ENV_VAR):
        return expand_path(os.environ[ENV_VAR], f"${ENV_VAR}")
    base = os.environ.get("XDG_CACHE_HOME") or expand_path("~", "the home folder ($HOME)") / ".cache"
    return Path(base) / "npembed"


def expand_path(path: str | os.PathLike, what: str) -> Path:
    """``Path(path).expanduser()``, or UsageError naming ``what`` where ``~user`` names no user
    (pathlib raises a bare RuntimeError)."""
    try:
        return Path(path).expanduser()
    except RuntimeError as err:
        from npembed.errors import UsageError
        raise UsageError(f"{what} {os.fspath(path)!r}: cannot expand '~' ({err}); give the "
                         "path without it") from None
