"""What the numbers were measured on: CPU, cores, BLAS, versions, and the memory-traffic floor."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import time

import numpy as np


def machine_info() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "numpy": np.__version__,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    from npembed import kernels
    info["npembed_kernels"] = kernels.backend()
    if info["npembed_kernels"] == "native":
        from npembed import native
        info["npembed_kernels"] += f" ({native.compiler_version()})"
    for package in ("tensorflow", "keras", "torch"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                        for pool in threadpool_info()]
    except ImportError:
        config = np.show_config(mode="dicts") if "mode" in np.show_config.__code__.co_varnames else {}
        info["blas"] = config.get("Build Dependencies", {}).get("blas", {}) if config else "unknown"
    return info


def copy_bandwidth(nbytes: int, repeats: int = 50) -> float:
    """Bytes moved per second by ``np.copyto`` (one read + one write per byte copied)."""
    source = np.ones(nbytes // 4, dtype=np.float32)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best


def memory_floor(vocab_size: int, dim: int, hidden: int, tokens_per_step: float) -> dict:
    """The least traffic one Keras-exact training step needs, and its time at copy bandwidth.

    Adam moves every weight every step: read w, m, v and write them back (6 float32 accesses per
    parameter; the gradient of an untouched row is 0 and need not be read).  The lookup reads one
    embedding row per token.  Everything else (a 16x16 layer) is negligible.
    """
    params = vocab_size * dim + dim * hidden + hidden + hidden + 1
    adam_bytes = 6 * 4 * params
    lookup_bytes = 4 * dim * tokens_per_step
    state_bytes = 3 * 4 * params
    bandwidth = copy_bandwidth(state_bytes)          # the working set: w, m, v (cache-sized or not)
    return {"parameters": params, "bytes_per_step": adam_bytes + lookup_bytes,
            "copy_bandwidth_gb_s": bandwidth / 1e9,
            "floor_ms_per_step": 1000 * (adam_bytes + lookup_bytes) / bandwidth}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM).  Not ``getrusage``'s ru_maxrss, which Linux
    carries across fork + exec and would report the parent's size for a small child."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
