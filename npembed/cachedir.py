"""Where npembed keeps what it builds (the encoded data, the compiled kernels)."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "NPEMBED_CACHE"


def default_cache_dir() -> Path:
    """``$NPEMBED_CACHE``, else ``$XDG_CACHE_HOME/npembed``, else ``~/.cache/npembed``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "npembed"
