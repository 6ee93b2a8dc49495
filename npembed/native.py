"""The "native" kernel backend: ``native.c`` compiled on first use, with wrappers that match
the NumPy kernels in ``kernels.py``.

The C source ships with the package.  The first process that needs it compiles it with the
machine's C compiler (``$CC``, else the one Python was built with) and the Python headers, into
``<cache>/native/<key>/`` (``$NPEMBED_CACHE``, else ``~/.cache/npembed``); the key hashes the
source, the compiler, the flags, the Python version and the CPU, so a change to any of them
builds afresh.  The build lands atomically (compiled beside, then renamed) under the build
folder's lock, and its sha256 is recorded beside it: a module that no longer matches (truncated,
bit-flipped) is rebuilt before it is loaded, never loaded.  Without a compiler ``kernels.py``
falls back to NumPy and says why.

Importing this module compiles nothing; :func:`load` does (about a second, once).
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import shlex
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

SOURCE = Path(__file__).with_name("native.c")
MODULE_NAME = "_npembed_native"
# -ffp-contract=off: no fused multiply-add (Keras rounds products and sums separately).
# -fno-math-errno: sqrt may be the vectorised instruction (no errno to set for negative input).
EXACT_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared"]
CPU_FLAGS = ["-march=native"]            # dropped, with a retry, where the compiler refuses it

_module = None
_lock = threading.Lock()


class BuildError(RuntimeError):
    """The C kernels could not be compiled or loaded (the message has the compiler's output)."""


def load():
    """The compiled module, building it first if this machine has none cached."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            try:
                _module = _build_and_import()
            except OSError as err:                  # an unwritable cache, a full disk, ...
                raise BuildError(f"could not build the C kernels in the cache: {err}") from err
    return _module


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


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
    version = _version_text(compiler)
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), version.encode(), " ".join(EXACT_FLAGS + CPU_FLAGS).encode(),
                 sys.version.encode(), platform.machine().encode(), _cpu_identity().encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _build_and_import():
    compiler = _compiler()
    target_dir = default_cache_dir() / "native" / _build_key(compiler)
    target = target_dir / (MODULE_NAME + sysconfig.get_config_var("EXT_SUFFIX"))
    target_dir.mkdir(parents=True, exist_ok=True)
    with locked_folder(target_dir, wait=True, what="native build folder"):
        if not _intact(target):
            _compile(compiler, target)
            atomic_write_text(_checksum_file(target), _sha256(target) + "\n")
    loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(target))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, target, loader=loader)
    module = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(module)
    except ImportError as err:
        raise BuildError(f"could not load the compiled kernels {target}: {err}") from err
    return module


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
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        errors = []
        for cpu_flags in (CPU_FLAGS, []):
            command = [*compiler, *EXACT_FLAGS, *cpu_flags, *includes, str(SOURCE), "-o", str(partial), *link]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.SubprocessError) as err:
                raise BuildError(f"could not run the C compiler ({' '.join(command)}): {err}") from err
            if done.returncode == 0:
                os.replace(partial, target)
                return
            errors.append(f"$ {' '.join(command)}\n{done.stderr.strip()}")
        raise BuildError("compiling npembed's C kernels failed:\n" + "\n".join(errors))


# --------------------------------------------------------------------------- wrappers
_scratch = threading.local()


def _counter(num_rows: int) -> np.ndarray:
    """A zero (num_rows,) int32 counter kept per thread and size, so that no step pays for
    allocating or clearing a vocabulary-sized array (the kernels leave it zero)."""
    return _kept("counter", num_rows, lambda: np.zeros(num_rows, dtype=np.int32))


def _slot_map(num_rows: int) -> np.ndarray:
    """A (num_rows,) int32 array of -1, kept likewise (the kernels leave it so)."""
    return _kept("slot", num_rows, lambda: np.full(num_rows, -1, dtype=np.int32))


def _accumulators(rows: int, width: int) -> np.ndarray:
    """A float64 (at least rows, width) scratch buffer kept per thread and width, grown on
    demand: a fresh one each step would cost a page fault per page, 40 us a step at 1M x 64."""
    buffer = _kept("accumulators", width, lambda: np.empty((rows, width)))
    if buffer.shape[0] < rows:
        buffer = _scratch.__dict__[("accumulators", width)] = np.empty((2 * rows, width))
    return buffer


def _kept(kind: str, key: int, make) -> np.ndarray:
    kept = _scratch.__dict__
    if (kind, key) not in kept:
        kept[(kind, key)] = make()
    return kept[(kind, key)]


def review_row_counts(ids: np.ndarray, mask: np.ndarray | None, num_rows: int):
    """(pair_rows, pair_counts, offsets): review b holds row ``pair_rows[p]`` at
    ``pair_counts[p]`` unmasked positions for p in ``offsets[b]:offsets[b+1]`` (a row seen only
    at masked positions has count 0).  ids (B, L) must lie in [0, num_rows)."""
    if ids.dtype not in (np.int32, np.int64) or not ids.flags.c_contiguous:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
    if mask is not None:
        mask = np.ascontiguousarray(mask, dtype=bool)
    counter = _counter(num_rows)
    pair_rows = np.empty(ids.size, dtype=np.int64)
    pair_counts = np.empty(ids.size, dtype=np.int64)
    offsets = np.empty(ids.shape[0] + 1, dtype=np.int64)
    load().count_review_rows(ids, mask, counter, pair_rows, pair_counts, offsets, ids.shape[0],
                             ids.shape[1], num_rows, ids.itemsize)
    return pair_rows, pair_counts, offsets


def pooled_lookup(ids: np.ndarray, table: np.ndarray, mask: np.ndarray | None):
    """(pooled (B, D) in table.dtype, tokens per review (B,), review row counts); twin of
    ``kernels.pooled_lookup`` (a masked review with no token comes back as zeros; the caller
    raises for it)."""
    counts = review_row_counts(ids, mask, table.shape[0])
    batch, dim = ids.shape[0], table.shape[1]
    pooled = np.empty((batch, dim), dtype=table.dtype)
    lengths = np.empty(batch, dtype=np.int64)
    load().pooled_sum(table, *counts, pooled, lengths, table.shape[0], batch, dim,
                      ids.shape[1] if mask is None else 0, table.itemsize)
    return pooled, lengths, counts


def pooled_row_sums(counts, row_gradient: np.ndarray, num_rows: int):
    """rows (U,) ascending, sums (U, D), squared sums (U, D) in row_gradient's dtype, from
    :func:`review_row_counts`; twin of ``kernels.pooled_row_sums``.  Two calls: the distinct
    rows first, so that the outputs are allocated at their exact size (an array sized for the
    worst case and partly written costs a page fault per page), then the sums."""
    pair_rows, pair_counts, offsets = counts
    row_gradient = np.ascontiguousarray(row_gradient)
    (batch, dim), pairs = row_gradient.shape, int(offsets[-1])
    slot, module = _slot_map(num_rows), load()
    rows = np.empty(2 * pairs, dtype=np.int64)                 # the second half: sort scratch
    single = np.empty(pairs, dtype=np.uint8)
    distinct = module.distinct_rows(pair_rows, offsets, slot, rows, single, batch, num_rows,
                                    num_rows <= 8 * pairs)
    try:                                                       # slot holds row -> k until row_sums
        sums = np.empty((distinct, dim), dtype=row_gradient.dtype)
        squares = np.empty((distinct, dim), dtype=row_gradient.dtype)
        module.row_sums(pair_rows, pair_counts, offsets, row_gradient, slot, rows, single,
                        _accumulators(distinct, 2 * dim), sums, squares, batch, dim, distinct,
                        row_gradient.itemsize)
    except BaseException:
        slot[rows[:distinct]] = -1                             # keep the map clean for the next call
        raise
    return rows[:distinct], sums, squares


def adam_update(weight, m, v, grad, alpha, c1, c2, eps) -> None:
    """Dense Keras Adam in place with ``S = grad**2``; bit for bit ``optimizers.adam_update``."""
    load().adam(0, weight, m, v, None, np.ascontiguousarray(grad, dtype=weight.dtype), None,
                weight.size, 1, 0, alpha, c1, c2, eps, weight.itemsize)


def adam_update_rows(weight, m, v, rows, grad_rows, squared_rows, alpha, c1, c2, eps, lazy=False) -> None:
    """Keras Adam in place on a (V, D) table whose gradient is zero outside ``rows`` (ascending,
    distinct): one pass over the table, bit for bit ``optimizers.adam_update`` with the
    dense gradient and squared sums; ``lazy``: only ``rows`` move."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    load().adam(2 if lazy else 1, weight, m, v, rows, np.ascontiguousarray(grad_rows, dtype=weight.dtype),
                np.ascontiguousarray(squared_rows, dtype=weight.dtype), weight.shape[0], weight.shape[1],
                rows.shape[0], alpha, c1, c2, eps, weight.itemsize)


# --------------------------------------------------------------------------- text
def tokenize(text: bytes, offsets: np.ndarray, word: np.ndarray):
    """(index (M,) int32, token_offsets (R+1,) int64, prepared bytes, prepared_chars (T,) int64):
    tfds's prepared tokens of the UTF-8 texts ``text[offsets[r]:offsets[r+1]]``, numbered in order
    of first sight (see ``tokenize`` in native.c); ``word`` (0x110000,) uint8 marks \\w."""
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


def _ids_and_mask(ids: np.ndarray, mask: np.ndarray):
    if ids.dtype not in (np.int32, np.int64) or not ids.flags.c_contiguous:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
    return ids, np.ascontiguousarray(mask, dtype=bool)


def masked_pooled_lookup(ids: np.ndarray, table: np.ndarray, mask: np.ndarray):
    """(pooled (B, D) in table.dtype, tokens per review (B,)): the masked average of the rows
    at the masked-in positions, without per-review distinct rows; twin of
    ``kernels.pooled_lookup`` with a mask.  Raises IndexError for an id outside the table."""
    ids, mask = _ids_and_mask(ids, mask)
    batch, dim = ids.shape[0], table.shape[1]
    pooled = np.empty((batch, dim), dtype=table.dtype)
    lengths = np.empty(batch, dtype=np.int64)
    bad = load().masked_pool(0, ids, mask, table, pooled, lengths, batch, ids.shape[1], table.shape[0],
                             dim, ids.itemsize, table.itemsize)
    if bad != -1:
        raise IndexError(f"token id {bad} is outside the table's {table.shape[0]} rows")
    return pooled, lengths


def sgd_scatter(table: np.ndarray, ids: np.ndarray, mask: np.ndarray, step: np.ndarray) -> None:
    """``table[ids[b, t]] -= step[b]`` at every masked-in position, in place, in position
    order; twin of ``kernels.sgd_pooled_rows``.  Raises IndexError for an id outside the table."""
    ids, mask = _ids_and_mask(ids, mask)
    step = np.ascontiguousarray(step, dtype=table.dtype)
    bad = load().masked_pool(1, ids, mask, table, step, None, ids.shape[0], ids.shape[1], table.shape[0],
                             table.shape[1], ids.itemsize, table.itemsize)
    if bad != -1:
        raise IndexError(f"token id {bad} is outside the table's {table.shape[0]} rows")


def review_sgd(ids, mask, labels, table, kernel, bias, learning_rate):
    """(logits (B,), losses (B,)) before each review's step; fastText's per-review SGD on
    Embedding -> masked average -> Dense(1) in place (table, kernel (D,), bias (1,)); twin of
    ``per_review.review_sgd_reference``.  Raises IndexError / ValueError like the layers."""
    return _review_steps(ids, mask, labels, table, kernel, bias, learning_rate)


def review_adagrad(ids, mask, labels, table, row_acc, kernel, kernel_acc, bias, bias_acc, learning_rate, epsilon,
                   row_rates=None):
    """(logits (B,), losses (B,)) before each review's step; row-wise Adagrad one review at a time
    on Embedding -> masked average -> Dense(1), in place (table (V, D) and its row_acc (V,),
    kernel and kernel_acc (D,), bias and bias_acc (1,), all of the table's dtype; row_rates (V,)
    of that dtype, or None: each row's rate multiplier); twin of
    ``per_review.review_adagrad_reference``.  Raises IndexError / ValueError like the layers."""
    count = _kept("row_count", table.shape[0], lambda: np.zeros(table.shape[0], dtype=np.int32))
    return _review_steps(ids, mask, labels, table, kernel, bias, learning_rate,
                         (row_acc, kernel_acc, bias_acc, count, row_rates), epsilon)


def _review_steps(ids, mask, labels, table, kernel, bias, learning_rate, adagrad_state=(None,) * 5,
                  epsilon=0.0):
    """The kernel returns an out-of-range id, -1 (none) or -2 (an empty review): ids must be >= 0,
    as ``per_review.review_step`` checks (``checks.check_token_ids``) before it calls."""
    ids, mask = _ids_and_mask(ids, mask)
    labels = np.ascontiguousarray(labels, dtype=table.dtype).reshape(-1)
    batch, dim = ids.shape[0], table.shape[1]
    logits = np.empty(batch, dtype=table.dtype)
    losses = np.empty(batch, dtype=table.dtype)
    bad = load().review_steps(ids, mask, labels, table, kernel, bias, logits, losses, *adagrad_state, batch,
                              ids.shape[1], table.shape[0], dim, float(learning_rate), float(epsilon),
                              ids.itemsize, table.itemsize)
    if bad == -2:
        raise ValueError("a review has no token (every position is padding): its average is undefined")
    if bad != -1:
        raise IndexError(f"token id {bad} is outside the table's {table.shape[0]} rows")
    return logits, losses


def pooled_lazy_adam(weight, m, v, ids, mask, row_gradient, alpha, c1, c2, eps) -> None:
    """Lazy Adam in place on the rows a masked pooled batch looked up, its gradient summed per
    row straight from the ids (``dE[r] = sum over positions holding r of row_gradient[b]``);
    twin of ``kernels.pooled_lazy_adam`` (bit for bit the generic path in float32).  Raises
    IndexError, with nothing updated, for an id outside the table."""
    ids, mask = _ids_and_mask(ids, mask)
    row_gradient = np.ascontiguousarray(row_gradient, dtype=weight.dtype)
    positions, dim = ids.size, weight.shape[1]
    rows = _kept("lazy_rows", 0, lambda: np.empty(0, dtype=np.int64))
    if rows.size < positions:
        rows = _scratch.__dict__[("lazy_rows", 0)] = np.empty(2 * positions, dtype=np.int64)
    bad = load().pooled_lazy_adam(ids, mask, row_gradient, weight, m, v, _slot_map(weight.shape[0]), rows,
                                  _accumulators(positions, dim), ids.shape[0], ids.shape[1], weight.shape[0],
                                  dim, float(alpha), float(c1), float(c2), float(eps), ids.itemsize, weight.itemsize)
    if bad != -1:
        raise IndexError(f"token id {bad} is outside the table's {weight.shape[0]} rows")
