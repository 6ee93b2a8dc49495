"""The "native" kernel backend: the C files of ``npembed/csrc/`` compiled on first use into one
extension module, with wrappers that pass every array with its shape.

``csrc/`` holds plain C kernels (``embedding.c``, ``masked_pool.c``, ``adam.c``,
``review_steps.c``, ``lstm.c``; the tokenizer in ``tokenizer.c``) and one binding file,
``binding.c``, the only one that sees Python: it checks each array's type, contiguity and
size against the shapes these wrappers pass before any kernel runs.  The C path is float32 with
int64 token ids; ``kernels.py`` sends float64 to its NumPy reference instead.

The first process that needs the module compiles it with the machine's C compiler (``$CC``,
flags included, else the one Python was built with) into ``<cache>/native/<key>/``
(``$NPEMBED_CACHE``, else ``~/.cache/npembed``).  The key hashes every source file, the whole
``$CC``, the compiler's ``--version``, the flags, the Python version and the CPU, so a change
to any of them builds afresh.  The build lands atomically (compiled in a temporary folder
beside, then renamed) under the build folder's lock; temporary folders left by a killed build
are removed by the next; an interrupted build kills the compiler's whole process group.  The
module's sha256 is recorded beside it: one that no longer matches (truncated, bit-flipped) is
rebuilt, never loaded.  A built module in a read-only cache is loaded as it is; one that is
missing there is a :class:`BuildError` that says to set ``$NPEMBED_CACHE``.

Importing this module compiles nothing; :func:`load` does (a few seconds, once).
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

import numpy as np

from npembed.atomic import atomic_write_text
from npembed.cachedir import default_cache_dir
from npembed.locks import locked_folder

SOURCE_DIR = Path(__file__).with_name("csrc")
MODULE_NAME = "_npembed_native"
# -ffp-contract=off: no fused multiply-add (Keras rounds products and sums separately);
# -fno-fast-math after $CC's own flags, so that a CC="gcc -ffast-math" cannot undo that.
# -fno-math-errno: sqrt may be the vectorised instruction (no errno to set for negative input).
EXACT_FLAGS = ["-O3", "-fno-fast-math", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared"]
CPU_FLAGS = ["-march=native"]            # dropped, with a retry, where the compiler refuses it
TEMPORARY_PREFIX = "build-"              # the compile's own folder beside the module

_module = None
_lock = threading.Lock()


class BuildError(RuntimeError):
    """The C kernels could not be compiled or loaded (the message says why and what to do)."""


def sources() -> list[Path]:
    """Every file compiled or included: csrc/*.c and csrc/*.h, by name."""
    return sorted([*SOURCE_DIR.glob("*.c"), *SOURCE_DIR.glob("*.h")])


def load():
    """The compiled module, building it first if this machine has none cached."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            _module = _build_and_import()
    return _module


def _compiler_setting() -> str:
    return os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"


def _compiler() -> list[str]:
    return shlex.split(_compiler_setting())


def _version_text(compiler: list[str]) -> str:
    """What ``cc --version`` prints (part of the build key), or BuildError."""
    try:
        return subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise BuildError(f"no C compiler: {' '.join(compiler)} --version failed ({err})") from err


def compiler_version() -> str:
    """The first line of ``cc --version`` for the compiler the kernels are built with."""
    try:
        text = _version_text(_compiler())
    except BuildError:
        return "no compiler"
    return text.splitlines()[0] if text else "unknown"


def _cpu_identity() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line for line in handle if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _build_key(compiler: list[str]) -> str:
    """16 hex digits of the sha256 of every source file (name and bytes), the compiler command
    as given (``$CC`` with its flags), its ``--version``, the flags, Python and the CPU."""
    digest = hashlib.sha256()
    parts = [part for path in sources() for part in (path.name.encode(), path.read_bytes())]
    parts += [shlex.join(compiler).encode(), _version_text(compiler).encode(),
              " ".join(EXACT_FLAGS + CPU_FLAGS).encode(), sys.version.encode(), platform.machine().encode(),
              _cpu_identity().encode()]
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:16]


def _build_and_import():
    compiler = _compiler()
    try:
        target_dir = default_cache_dir() / "native" / _build_key(compiler)
    except OSError as err:                           # a source file unreadable
        raise BuildError(f"could not read the C sources in {SOURCE_DIR}: {err}") from err
    target = target_dir / (MODULE_NAME + sysconfig.get_config_var("EXT_SUFFIX"))
    if not _intact(target):
        try:
            _build_locked(compiler, target)
        except OSError as err:                       # a read-only or full cache, ...
            raise BuildError(_cache_advice(target_dir, err)) from err
    loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(target))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, target, loader=loader)
    module = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(module)
    except ImportError as err:
        raise BuildError(f"could not load the compiled kernels {target}: {err}") from err
    return module


def _cache_advice(target_dir: Path, err: OSError) -> str:
    """What went wrong writing the build folder, and what to do."""
    reason = err.strerror or str(err)
    return (f"the C kernels are not built for this machine yet and their cache folder {target_dir} "
            f"cannot be written ({reason}): set NPEMBED_CACHE to a writable folder to build them "
            "there (or NPEMBED_KERNELS=numpy to use the NumPy kernels)")


def _build_locked(compiler: list[str], target: Path) -> None:
    """Compile under the build folder's lock, unless another process just did."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked_folder(target.parent, wait=True, what="native build folder"):
        _remove_stale_temporaries(target.parent)
        if not _intact(target):
            _compile(compiler, target)
            atomic_write_text(_checksum_file(target), _sha256(target) + "\n")


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary build folders left by a build that was killed (SIGKILL gives no chance to
    clean up); any there now is stale, since the caller holds the folder's lock."""
    for leftover in folder.glob(TEMPORARY_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _checksum_file(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _intact(target: Path) -> bool:
    """The cached module exists and has the checksum recorded when it was built: loading a
    damaged shared object would crash the process (SIGSEGV), with no message to act on."""
    try:
        return _checksum_file(target).read_text().strip() == _sha256(target)
    except OSError:
        return False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _compile(compiler: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{sysconfig.get_paths()['include']}"]
    link = ["-undefined", "dynamic_lookup"] if sys.platform == "darwin" else []
    files = [str(path) for path in sources() if path.suffix == ".c"]
    with tempfile.TemporaryDirectory(prefix=TEMPORARY_PREFIX, dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        errors = []
        for cpu_flags in (CPU_FLAGS, []):
            command = [*compiler, *EXACT_FLAGS, *cpu_flags, *includes, *files, "-o", str(partial), *link]
            returncode, stderr = _run_compiler(command)
            if returncode == 0:
                os.replace(partial, target)
                return
            errors.append(f"$ {' '.join(command)}\n{stderr.strip()}")
        raise BuildError("compiling npembed's C kernels failed:\n" + "\n".join(errors))


def _run_compiler(command: list[str]) -> tuple[int, str]:
    """(exit status, stderr) of the compiler, run in its own process group: when npembed is
    interrupted (Ctrl-C, SIGTERM) or the compile passes 300 s, the whole group (the driver and
    its cc1, as, ld) is killed before the exception goes on, so no compiler outlives npembed.
    Under SIGKILL nothing of npembed runs: the kernel kills the driver (``_die_with_parent``);
    a cc1 already started finishes its file, and the next build removes the folder."""
    try:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True, preexec_fn=_die_with_parent())
    except OSError as err:
        raise BuildError(f"could not run the C compiler ({' '.join(command)}): {err}") from err
    try:
        _, stderr = process.communicate(timeout=300)
    except BaseException as err:
        _kill_group(process)
        if isinstance(err, subprocess.TimeoutExpired):
            raise BuildError(f"the C compiler took more than 300 s ({' '.join(command)})") from err
        raise
    return process.returncode, stderr


def _die_with_parent():
    """On Linux, a function for the child between fork and exec that asks the kernel to
    SIGKILL it when npembed dies (PR_SET_PDEATHSIG): a SIGKILL of npembed leaves no compiler
    driver running.  None elsewhere."""
    if sys.platform != "linux":
        return None
    import ctypes                                  # only here: Linux's prctl
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGKILL)        # 1: PR_SET_PDEATHSIG


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:                                # already gone
        pass
    process.wait()


# --------------------------------------------------------------------------- arrays in
# The binding checks every buffer's type and size; these helpers give it the C path's types
# (int64 ids, a uint8/bool mask, float32 values) and refuse what would be converted silently.
def _ids(ids: np.ndarray) -> np.ndarray:
    """(B, L) token ids as C-contiguous int64 (a copy only when they are not already)."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"token ids must be a (batch, length) integer array, got {ids.dtype} {ids.shape}")
    if ids.dtype == np.uint64 and ids.size and ids.max() > np.iinfo(np.int64).max:
        raise IndexError(f"token id {ids.max()} is outside the table")
    return np.ascontiguousarray(ids, dtype=np.int64)


def _mask(mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.shape != ids.shape:
        raise ValueError(f"the mask has shape {mask.shape}, the ids {ids.shape}")
    return mask


def _float32(array: np.ndarray, name: str, written: bool = False) -> np.ndarray:
    """``array`` as C-contiguous float32 (itself when the kernel writes it: the binding refuses
    a non-contiguous one rather than update a copy); the C path refuses float64, which
    kernels.py sends to the NumPy reference."""
    if np.asarray(array).dtype != np.float32:
        raise TypeError(f"the native kernels take float32 {name}, got {np.asarray(array).dtype} (float64 "
                        "runs on the NumPy reference: use kernels.py, which dispatches on the dtype)")
    return array if written else np.ascontiguousarray(array)


def _same_shapes(weight: np.ndarray, *others: np.ndarray) -> None:
    """Refuse state whose shape is not its weight's (an optimizer's moments from another model;
    the binding checks sizes, this the shapes).  Plain comparisons: it runs every step."""
    for other in others:
        if other.shape != weight.shape:
            raise ValueError(f"an array of shape {other.shape} for a weight of shape {weight.shape}: optimizer "
                             "state built for another model (compile the model with a fresh optimizer)")


# --------------------------------------------------------------------------- scratch
_scratch = threading.local()


def _kept(kind: str, key: int, make) -> np.ndarray:
    kept = _scratch.__dict__
    if (kind, key) not in kept:
        kept[(kind, key)] = make()
    return kept[(kind, key)]


def _counter(num_rows: int) -> np.ndarray:
    """A zero (num_rows,) int32 counter kept per thread and size, so that no step pays for
    allocating or clearing a vocabulary-sized array (the kernels leave it zero)."""
    return _kept("counter", num_rows, lambda: np.zeros(num_rows, dtype=np.int32))


def _slot_map(num_rows: int) -> np.ndarray:
    """A (num_rows,) int32 array of -1, kept likewise (the kernels leave it so)."""
    return _kept("slot", num_rows, lambda: np.full(num_rows, -1, dtype=np.int32))


def _grown(kind: str, size: int, dtype) -> np.ndarray:
    """A flat scratch buffer of at least ``size`` entries kept per thread, grown on demand: a
    fresh one each step would cost a page fault per page, 40 us a step at 1M x 64."""
    buffer = _kept(kind, 0, lambda: np.empty(max(size, 1), dtype=dtype))
    if buffer.size < size:
        buffer = _scratch.__dict__[(kind, 0)] = np.empty(2 * size, dtype=dtype)
    return buffer


# --------------------------------------------------------------------------- pooled embedding
def review_row_counts(ids: np.ndarray, mask: np.ndarray | None, num_rows: int):
    """(pair_rows, pair_counts, offsets): review b holds row ``pair_rows[p]`` at
    ``pair_counts[p]`` unmasked positions for p in ``offsets[b]:offsets[b+1]`` (a row seen only
    at masked positions has count 0).  ids (B, L); IndexError for an id outside [0, num_rows)."""
    ids = _ids(ids)
    mask = None if mask is None else _mask(mask, ids)
    (batch, length), positions = ids.shape, ids.size
    pair_rows, pair_counts = np.empty(positions, dtype=np.int64), np.empty(positions, dtype=np.int64)
    offsets = np.empty(batch + 1, dtype=np.int64)
    load().review_row_counts(ids, mask, _counter(num_rows), pair_rows, pair_counts, offsets, batch, length,
                             num_rows)
    return pair_rows, pair_counts, offsets


def pooled_lookup(ids: np.ndarray, table: np.ndarray, mask: np.ndarray | None):
    """Embedding -> GlobalAveragePooling1D forward: (pooled (B, D) float32, tokens per review
    (B,), review row counts for :func:`pooled_row_sums`); twin of ``kernels.pooled_lookup``
    (a masked review with no token comes back as zeros; the caller raises for it)."""
    table = _float32(table, "table")
    counts = review_row_counts(ids, mask, table.shape[0])
    (num_rows, dim), batch = table.shape, counts[2].size - 1
    pooled = np.empty((batch, dim), dtype=np.float32)
    lengths = np.empty(batch, dtype=np.int64)
    length = np.shape(ids)[1] if mask is None else 0
    load().pooled_embedding_forward(table, *counts, pooled, lengths, num_rows, batch, dim, counts[0].size, length)
    return pooled, lengths, counts


def pooled_row_sums(counts, row_gradient: np.ndarray, num_rows: int):
    """Its backward: rows (U,) ascending, sums (U, D), squared sums (U, D) in float32 from
    :func:`review_row_counts`; twin of ``kernels.pooled_row_sums``.  Two calls: the distinct
    rows first, so that the outputs are allocated at their exact size (an array sized for the
    worst case and partly written costs a page fault per page), then the sums."""
    pair_rows, pair_counts, offsets = counts
    row_gradient = _float32(row_gradient, "row_gradient")
    (batch, dim), pairs = row_gradient.shape, pair_rows.size
    if offsets.size != batch + 1:
        raise ValueError(f"row_gradient has {batch} rows, the counts {offsets.size - 1} reviews")
    slot, module = _slot_map(num_rows), load()
    rows = np.empty(2 * pairs, dtype=np.int64)                 # the second half: sort scratch
    single = np.empty(pairs, dtype=np.uint8)
    distinct = module.distinct_rows(pair_rows, offsets, slot, rows, single, batch, num_rows, pairs,
                                    num_rows <= 8 * pairs)
    try:                                                       # slot holds row -> k until the sums
        sums = np.empty((distinct, dim), dtype=np.float32)
        squares = np.empty((distinct, dim), dtype=np.float32)
        module.pooled_embedding_backward(pair_rows, pair_counts, offsets, row_gradient, slot, rows, single,
                                         _grown("accumulators", 2 * distinct * dim, np.float64), sums, squares,
                                         batch, dim, num_rows, pairs, distinct)
    except BaseException:
        slot[rows[:distinct]] = -1                             # keep the map clean for the next call
        raise
    return rows[:distinct], sums, squares


# --------------------------------------------------------------------------- masked pooling
def masked_pooled_lookup(ids: np.ndarray, table: np.ndarray, mask: np.ndarray):
    """(pooled (B, D) float32, tokens per review (B,)): the masked average of the rows at the
    masked-in positions, without per-review distinct rows; twin of ``kernels.pooled_lookup``
    with a mask.  IndexError for an id outside the table."""
    ids, table = _ids(ids), _float32(table, "table")
    mask = _mask(mask, ids)
    (batch, length), (num_rows, dim) = ids.shape, table.shape
    pooled = np.empty((batch, dim), dtype=np.float32)
    lengths = np.empty(batch, dtype=np.int64)
    load().masked_pool_forward(ids, mask, table, pooled, lengths, batch, length, num_rows, dim)
    return pooled, lengths


def sgd_scatter(table: np.ndarray, ids: np.ndarray, mask: np.ndarray, step: np.ndarray) -> None:
    """``table[ids[b, t]] -= step[b]`` at every masked-in position, in place, in position
    order; twin of ``kernels.sgd_pooled_rows``.  IndexError (table untouched) for an id outside
    the table."""
    ids, step = _ids(ids), _float32(step, "step")
    mask = _mask(mask, ids)
    (batch, length), (num_rows, dim) = ids.shape, table.shape
    load().sgd_scatter(ids, mask, _float32(table, "table", written=True), step, batch, length, num_rows, dim)


# --------------------------------------------------------------------------- Adam
def adam_dense(weight, m, v, grad, alpha, c1, c2, eps) -> None:
    """Dense Keras Adam in place with ``S = grad**2``; bit for bit ``optimizers.adam_update``.
    weight, m, v, grad: float32, C-contiguous, ``weight.size`` entries each (the binding checks
    each; ``kernels.adam_update`` checks their shapes first).  Nothing else here: it runs for
    every dense weight every step, and each microsecond is 2.5 ms of a tutorial epoch."""
    load().adam_dense(weight, m, v, grad, weight.size, alpha, c1, c2, eps)


def adam_rows(weight, m, v, rows, grad_rows, squared_rows, alpha, c1, c2, eps) -> None:
    """Keras Adam in place on a (V, D) table whose gradient is zero outside ``rows`` (ascending,
    distinct): one pass over the table, bit for bit ``optimizers.adam_update`` with the dense
    gradient and squared sums."""
    _rows_call(load().adam_rows, weight, m, v, rows, grad_rows, squared_rows, alpha, c1, c2, eps)


def lazy_adam_rows(weight, m, v, rows, grad_rows, squared_rows, alpha, c1, c2, eps) -> None:
    """The same update on ``rows`` only; the other rows' weights, m and v stay as they are."""
    _rows_call(load().lazy_adam_rows, weight, m, v, rows, grad_rows, squared_rows, alpha, c1, c2, eps)


def _rows_call(kernel, weight, m, v, rows, grad_rows, squared_rows, alpha, c1, c2, eps) -> None:
    _same_shapes(weight, m, v)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    grad_rows, squared_rows = _float32(grad_rows, "grad_rows"), _float32(squared_rows, "squared_rows")
    num_rows, dim = weight.shape
    if grad_rows.shape != (rows.size, dim) or squared_rows.shape != (rows.size, dim):
        raise ValueError(f"grad_rows {grad_rows.shape} and squared_rows {squared_rows.shape} must be "
                         f"(rows, width) = ({rows.size}, {dim})")
    kernel(weight, m, v, rows, grad_rows, squared_rows, num_rows, dim, rows.size, alpha, c1, c2, eps)


def pooled_lazy_adam(weight, m, v, ids, mask, row_gradient, alpha, c1, c2, eps) -> None:
    """Lazy Adam in place on the rows a masked pooled batch looked up, its gradient summed per
    row straight from the ids (``dE[r] = sum over positions holding r of row_gradient[b]``);
    twin of ``kernels.pooled_lazy_adam``.  IndexError, with nothing updated, for an id outside
    the table."""
    _same_shapes(weight, m, v)
    ids, row_gradient = _ids(ids), _float32(row_gradient, "row_gradient")
    mask = _mask(mask, ids)
    (batch, length), (num_rows, dim) = ids.shape, weight.shape
    load().pooled_lazy_adam(ids, mask, row_gradient, weight, m, v, _slot_map(num_rows),
                            _grown("lazy_rows", ids.size, np.int64), _grown("accumulators", ids.size * dim, np.float64),
                            batch, length, num_rows, dim, float(alpha), float(c1), float(c2), float(eps))


# --------------------------------------------------------------------------- one step per review
def review_sgd(ids, mask, labels, table, kernel, bias, rate):
    """(logits (B,), losses (B,)) before each review's step; fastText's per-review SGD on
    Embedding -> masked average -> Dense(1) in place (table (V, D), kernel (D,), bias (1,),
    float32); twin of ``kernels.review_sgd_reference``.  IndexError for an id outside the
    table, ValueError for a review with no token, both before anything moves."""
    ids, logits, losses, shape = _review_batch(ids, mask, labels, table, kernel, bias)
    load().review_steps_sgd(ids[0], ids[1], ids[2], table, kernel, bias, logits, losses, *shape, float(rate))
    return logits, losses


def review_adagrad(ids, mask, labels, table, table_acc, kernel, kernel_acc, bias, bias_acc, rate, epsilon):
    """(logits (B,), losses (B,)) before each review's step; row-wise Adagrad one review at a time
    on Embedding -> masked average -> Dense(1), in place (table (V, D) and its table_acc (V,),
    kernel and kernel_acc (D,), bias and bias_acc (1,), all float32); twin of
    ``kernels.review_adagrad_reference``.  Refuses bad input before anything moves."""
    ids, logits, losses, shape = _review_batch(ids, mask, labels, table, kernel, bias)
    _same_shapes(kernel, kernel_acc)
    _same_shapes(bias, bias_acc)
    if np.shape(table_acc) != table.shape[:1]:
        raise ValueError(f"table_acc has shape {np.shape(table_acc)}, needs ({table.shape[0]},): one per row")
    count = _kept("row_count", table.shape[0], lambda: np.zeros(table.shape[0], dtype=np.int32))
    load().review_steps_adagrad(ids[0], ids[1], ids[2], table, kernel, bias, logits, losses, table_acc,
                                kernel_acc, bias_acc, count, *shape, float(rate), float(epsilon))
    return logits, losses


def _review_batch(ids, mask, labels, table, kernel, bias):
    """((ids, mask, labels), logits, losses, (B, L, V, D)) for the binding."""
    ids = _ids(ids)
    mask = _mask(mask, ids)
    labels = np.ascontiguousarray(labels, dtype=np.float32).reshape(-1)
    for name, array in (("table", table), ("kernel", kernel), ("bias", bias)):
        _float32(array, name, written=True)
    (batch, length), (num_rows, dim) = ids.shape, table.shape
    logits, losses = np.empty(batch, dtype=np.float32), np.empty(batch, dtype=np.float32)
    return (ids, mask, labels), logits, losses, (batch, length, num_rows, dim)


# --------------------------------------------------------------------------- LSTM recurrence
def lstm_forward(gates, recurrent, offsets, states, cells, tanh_cells) -> None:
    """One direction of ``recurrent_fast.forward_steps`` in place (lstm.c): gates (N, 4U) from
    x W + b to [i, f, o, g]; recurrent (U, 4U) halved on the sigmoid columns; offsets (J+1,)
    the packed steps; writes states, cells (N+1, U) (row N stays) and tanh_cells (N, U).  All
    float32 and C-contiguous (the written ones are not copied: the binding refuses them)."""
    size, width = gates.shape
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    load().lstm_forward(_float32(gates, "gates", written=True), _float32(recurrent, "recurrent"), offsets,
                        _float32(states, "states", written=True), _float32(cells, "cells", written=True),
                        _float32(tanh_cells, "tanh_cells", written=True), len(offsets) - 1, size, width // 4)


def lstm_backward(gates, recurrent_t, cells, tanh_cells, d_states, offsets, dh, dc) -> None:
    """One direction of ``recurrent_fast.backward_steps`` in place (lstm.c): gates (N, 4U) from
    [i, f, o, g] to dz; recurrent_t (4U, U) = R^T; cells (N+1, U), tanh_cells (N, U) from
    :func:`lstm_forward`; d_states (N, U) or None; dh (B, U) each sorted review's final-state
    gradient and dc (B, U) zeros, both overwritten."""
    size, width = gates.shape
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    load().lstm_backward(_float32(gates, "gates", written=True), _float32(recurrent_t, "recurrent_t"),
                         _float32(cells, "cells"), _float32(tanh_cells, "tanh_cells"),
                         None if d_states is None else _float32(d_states, "d_states"), offsets,
                         _float32(dh, "dh", written=True), _float32(dc, "dc", written=True),
                         len(offsets) - 1, size, width // 4, dh.shape[0])


# --------------------------------------------------------------------------- text
def tokenize(text: bytes, offsets: np.ndarray, word: np.ndarray):
    """(index (M,) int32, token_offsets (R+1,) int64, prepared bytes, prepared_chars (T,) int64):
    tfds's prepared tokens of the UTF-8 texts ``text[offsets[r]:offsets[r+1]]``, numbered in order
    of first sight (``tokenize_texts`` in csrc/tokenizer.c); ``word`` (0x110000,) uint8 marks \\w."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    token_offsets = np.empty(len(offsets), dtype=np.int64)
    index, prepared, chars = load().tokenize(text, offsets, np.ascontiguousarray(word, dtype=np.uint8),
                                             token_offsets)
    return (np.frombuffer(index, dtype=np.int32), token_offsets, bytes(prepared),
            np.frombuffer(chars, dtype=np.int64))


def code_points_present(text: bytes) -> np.ndarray | None:
    """(0x110000,) bool: the code points of the UTF-8 ``text``; None when it is not UTF-8."""
    present = np.zeros(0x110000, dtype=np.uint8)
    return present.view(bool) if load().code_points_present(text, present) else None


def encode_tokens(tokens: bytes, token_ends: np.ndarray, subwords: bytes, subword_ends: np.ndarray,
                  max_chars: int):
    """(ids (total,) int32, id_offsets (T+1,) int64): the greedy subword split of each UTF-8 token
    ``tokens[token_ends[t-1]:token_ends[t]]``, as ``encode``'s ids (1 + ``_token_to_ids``)."""
    token_ends = np.ascontiguousarray(token_ends, dtype=np.int64)
    id_offsets = np.empty(len(token_ends) + 1, dtype=np.int64)
    ids = load().encode_tokens(tokens, token_ends, subwords, np.ascontiguousarray(subword_ends, dtype=np.int64),
                               max_chars, id_offsets)
    return np.frombuffer(ids, dtype=np.int32), id_offsets


def gather_ids(index: np.ndarray, id_offsets: np.ndarray, token_ids: np.ndarray, token_offsets: np.ndarray):
    """(ids, offsets): every token occurrence's ids in order; text r's are ``ids[offsets[r]:offsets[r+1]]``."""
    offsets = np.empty(len(token_offsets), dtype=np.int64)
    ids = load().gather_ids(np.ascontiguousarray(index, dtype=np.int32), np.ascontiguousarray(id_offsets, dtype=np.int64),
                            np.ascontiguousarray(token_ids, dtype=np.int32),
                            np.ascontiguousarray(token_offsets, dtype=np.int64), offsets)
    return np.frombuffer(ids, dtype=np.int32), offsets
