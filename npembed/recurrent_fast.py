"""The LSTM's fast path: the same arithmetic as ``recurrent.lstm_forward``/``lstm_backward``,
arranged so that NumPy spends its time in BLAS and not in Python.

What changes against the reference loop (``recurrent.py``), and nothing else:

1. **The input projection for every step is one matrix product**: ``P = X W + b`` for all
   (step, review) pairs at once, (J*B, D) @ (D, 4U), before the loop; the loop adds only the
   recurrent product ``h_{t-1} R``.  Likewise after the backward loop: ``dW = X^T dZ``,
   ``dR = H_{t-1}^T dZ`` and ``dX = dZ W^T`` are one product each over all steps.
2. **Fused gates**: the columns are kept internally in the order i, f, o, c (Keras's is
   i, f, c, o), so one in-place sigmoid covers the three sigmoid gates and one tanh the cell
   candidate; ``sigmoid(z) = (1 + tanh(z / 2)) / 2`` needs no exp and cannot overflow.
3. **Several directions in one loop**: Bidirectional's two LSTMs run as a stack of K = 2
   (``np.matmul`` over a (K, n, U) @ (K, U, 4U) stack), halving the per-step Python overhead.
4. **No work on padding, with a mask**: the reviews are sorted longest first and each
   direction reads its review in its own order *within the review's length* (the backward
   direction reads tokens len-1, ..., 0).  At compact step j only the ``counts[j]`` reviews
   still running take part, a prefix of the sorted batch.  This is exact for Keras's masking:
   a masked step keeps the state, so a forward LSTM's state after its last token is carried
   to the end, and a ``go_backwards`` LSTM meets the padding first, keeping its zero state.

Shapes: K directions, B reviews, T padded steps, J = the longest review (T without a mask),
D input width, U units, G = 4U, N = the number of (step, review) pairs that run (B T without
a mask, the number of tokens with one).  "Packed" arrays are (K, N, ...): step 0's running
reviews, then step 1's, ... (``Plan``), so the products before and after the loops skip the
padding too.

The per-step loops (:func:`forward_steps`, :func:`backward_steps`) run in C for float32 under the
native backend (``csrc/lstm.c``, one direction per thread); their NumPy versions here
(``forward_steps_numpy``, ``backward_steps_numpy``) are the reference and run float64.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading

import numpy as np

from npembed import kernels, native


@contextlib.contextmanager
def one_blas_thread():
    """Run the LSTM with OpenBLAS on one thread: each step's product is small
    ((n, U) @ (U, 4U)), and OpenBLAS's threads, woken and joined at every step, cost several
    times the product (measured 0.77 ms against 0.10 ms for 2 x (64, 64) @ (64, 256) on the
    shared 2-core machine); there, the large products before and after the loops measured
    faster on one thread too (a whole training step 3.5 against 5.9 ms per padded step).  A
    no-op where NumPy's OpenBLAS cannot be found (another BLAS, another packaging)."""
    setter = _openblas_thread_setter()
    if setter is None:
        yield
        return
    get, set_threads = setter
    before = get()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)


_SETTER: list = []


def _openblas_thread_setter():
    """(get, set) of the OpenBLAS bundled with NumPy's wheel, or None."""
    if not _SETTER:
        _SETTER.append(None)
        folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
        for path in glob.glob(os.path.join(folder, "libscipy_openblas*")):
            lib = ctypes.CDLL(path)
            for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "")):
                get, put = (getattr(lib, f"{prefix}{verb}_num_threads{suffix}", None) for verb in ("get", "set"))
                if get is not None and put is not None:
                    put.argtypes = [ctypes.c_int]
                    _SETTER[0] = (get, put)
                    break
    return _SETTER[0]


def fused_gate_order(units: int) -> np.ndarray:
    """Column index: fused[:, n] = keras[:, order[n]]  (i, f, o from Keras's i, f, c, o, then c)."""
    u = units
    return np.r_[0:2 * u, 3 * u:4 * u, 2 * u:3 * u]


def is_prefix_mask(mask: np.ndarray) -> bool:
    """True when every row is some ones followed by zeros (right padding, what Embedding's
    ``mask_zero`` gives for padded batches); the fast path needs this."""
    return bool(np.all(mask[:, 1:] <= mask[:, :-1]))


class Plan:
    """Which reviews run at each step, packed: the running (step, review) pairs one after the
    other, step by step (PyTorch's PackedSequence), so that no array holds a padded step.

    rows (B,): batch row of sorted row r (longest first);  lengths (B,): sorted lengths;
    counts (J,): reviews still running at step j (the first counts[j] sorted rows);
    offsets (J+1,): step j's pairs are packed[offsets[j]:offsets[j+1]], rows 0..counts[j]-1;
    step (N,), row (N,): each packed pair's step and sorted row;  previous (N,): the packed
    index of the same review's previous step (N, a zero row, at step 0);
    positions (K, N): the time step of x that direction k reads there (j forwards,
    len - 1 - j backwards).
    """

    def __init__(self, mask: np.ndarray | None, batch: int, seq_len: int, backwards: tuple[bool, ...]):
        lengths = np.full(batch, seq_len) if mask is None else mask.sum(axis=1)
        self.rows = np.argsort(-lengths, kind="stable")
        self.lengths = lengths[self.rows]
        self.seq_len = seq_len
        longest = int(self.lengths.max()) if batch else 0
        self.step, self.row = np.nonzero(np.arange(longest)[:, None] < self.lengths[None, :])
        self.counts = np.bincount(self.step, minlength=longest)
        self.offsets = np.r_[0, np.cumsum(self.counts)]
        self.size = int(self.offsets[-1])
        self.previous = np.where(self.step > 0, self.offsets[np.maximum(self.step - 1, 0)] + self.row, self.size)
        backward = self.lengths[self.row] - 1 - self.step
        self.positions = np.stack([backward if back else self.step for back in backwards])

    def gather(self, x: np.ndarray) -> np.ndarray:
        """x (B, T, W) -> packed (K, N, W): what each direction reads at each running pair."""
        return x[self.rows[self.row][None, :], self.positions]

    def scatter(self, packed: np.ndarray) -> np.ndarray:
        """packed (K, N, W) -> (K, B, T, W) at the time steps read; zeros elsewhere."""
        out = np.zeros((packed.shape[0], len(self.rows), self.seq_len, packed.shape[-1]), packed.dtype)
        for k in range(packed.shape[0]):
            out[k, self.rows[self.row], self.positions[k]] = packed[k]
        return out

    def finals(self, packed: np.ndarray) -> np.ndarray:
        """packed states (K, N+1, U) -> each review's last state (K, B, U), in batch order
        (the zero row N for an empty review)."""
        last = np.where(self.lengths > 0, self.offsets[np.maximum(self.lengths - 1, 0)] + np.arange(len(self.rows)),
                        self.size)
        out = np.empty((packed.shape[0], len(self.rows), packed.shape[-1]), packed.dtype)
        out[:, self.rows] = packed[:, last]
        return out


def forward(x, mask, weights, backwards, keep_sequences: bool):
    """:func:`forward_on_one_thread` with OpenBLAS on one thread (:func:`one_blas_thread`)."""
    with one_blas_thread():
        return forward_on_one_thread(x, mask, weights, backwards, keep_sequences)


def backward(cache, d_sequences, d_finals):
    """:func:`backward_on_one_thread` with OpenBLAS on one thread (:func:`one_blas_thread`)."""
    with one_blas_thread():
        return backward_on_one_thread(cache, d_sequences, d_finals)


def forward_on_one_thread(x, mask, weights, backwards, keep_sequences: bool):
    """All directions of an LSTM over x.

    x (B, T, D); mask (B, T) prefix-shaped or None; weights: per direction (kernel (D, G),
    recurrent_kernel (U, G), bias (G,)) in Keras's gate order; backwards: per direction.
    Returns finals (K, B, U), the state after each direction's last step; sequences
    (K, B, T, U) aligned with x's time steps (direction k's h after reading step t, zeros where
    it read nothing) or None; and the cache for :func:`backward`.
    """
    plan = Plan(mask, x.shape[0], x.shape[1], tuple(backwards))
    order = fused_gate_order(weights[0][1].shape[0])
    kernel = np.stack([w[:, order] for w, _, _ in weights])               # (K, D, G)
    recurrent = np.stack([r[:, order] for _, r, _ in weights])            # (K, U, G)
    bias = np.stack([b[order] for _, _, b in weights])                    # (K, G)
    inputs = plan.gather(x)                                               # (K, N, D)
    half = _sigmoid_halving(kernel.shape[-1]).astype(x.dtype)             # exact: a power of 2
    gates = np.matmul(inputs, kernel * half)                              # (K, N, G)
    gates += (bias * half)[:, None, :]
    states, cells, tanh_cells = forward_steps(gates, recurrent * half, plan.offsets)
    sequences = plan.scatter(states[:, :-1]) if keep_sequences else None
    cache = dict(plan=plan, inputs=inputs, kernel=kernel, recurrent=recurrent, gates=gates,
                 states=states, cells=cells, tanh_cells=tanh_cells, order=order, x_shape=x.shape)
    return plan.finals(states), sequences, cache


def _sigmoid_halving(width: int) -> np.ndarray:
    """(G,) 0.5 on the sigmoid gates' columns (fused order i, f, o), 1 on the cell's: the
    projections then give z / 2 there, ready for sigmoid(z) = (1 + tanh(z / 2)) / 2.  Scaling by
    a power of two is exact, so this changes no bit of z / 2."""
    return np.r_[np.full(3 * width // 4, 0.5), np.ones(width // 4)]


PARALLEL_DIRECTIONS = True   # the C path runs each direction of a Bidirectional on its own thread


def each_direction(work, count: int) -> None:
    """work(0), ..., work(count - 1): direction 0 on this thread, the others on their own threads
    (the C kernels release the GIL) when PARALLEL_DIRECTIONS, else one after the other."""
    if not PARALLEL_DIRECTIONS or count < 2:
        for k in range(count):
            work(k)
        return
    errors = []

    def guarded(k):
        try:
            work(k)
        except BaseException as err:                 # re-raised on the calling thread below
            errors.append(err)
    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(1, count)]
    for thread in threads:
        thread.start()
    guarded(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def forward_steps(gates, recurrent, offsets):
    """:func:`forward_steps_numpy`, the same maths; float32 under the native backend runs
    ``native.lstm_forward`` (csrc/lstm.c) per direction instead, in the same order element by
    element (the recurrent product sums in another order, tanh is libm's: within the bound of
    tests/test_lstm_kernels.py).  float64 always runs the NumPy loop."""
    if not kernels.uses_native(gates):
        return forward_steps_numpy(gates, recurrent, offsets)
    k, size, width = gates.shape
    states = np.zeros((k, size + 1, width // 4), gates.dtype)
    cells = np.zeros_like(states)
    tanh_cells = np.zeros((k, size, width // 4), gates.dtype)
    recurrent = np.ascontiguousarray(recurrent)
    each_direction(lambda d: native.lstm_forward(gates[d], recurrent[d], offsets, states[d], cells[d],
                                                 tanh_cells[d]), k)
    return states, cells, tanh_cells


def forward_steps_numpy(gates, recurrent, offsets):
    """The recurrence, in place, on packed pairs.  gates (K, N, G) holds ``x_t W + b`` on entry
    (halved on the sigmoid columns, as ``recurrent`` (K, U, G) is) and the gate activations
    [i, f, o, g] on exit.  Returns states h (K, N+1, U) and cells c (K, N+1, U) (the last row,
    N, stays 0: the state before step 0) and tanh(c) (K, N, U).

        z/2 = gates[j] + h_{j-1} R/2;  [i f o] = (1 + tanh(z/2)) / 2;  g = tanh(z_c)
        c_j = f * c_{j-1} + i * g;  h_j = o * tanh(c_j)
    """
    k, size, width = gates.shape
    units = width // 4
    states = np.zeros((k, size + 1, units), gates.dtype)
    cells = np.zeros_like(states)
    tanh_cells = np.zeros((k, size, units), gates.dtype)
    for j in range(len(offsets) - 1):
        begin, end = offsets[j], offsets[j + 1]
        prev = slice(offsets[j - 1], offsets[j - 1] + end - begin) if j else slice(size, size + 1)  # row N: 0
        z = gates[:, begin:end]
        if j:
            z += np.matmul(states[:, prev], recurrent)
        np.tanh(z, out=z)                       # tanh(z/2) on the sigmoid gates, tanh(z) on g
        sig = z[..., :3 * units]
        sig *= 0.5
        sig += 0.5
        c = cells[:, begin:end]
        np.multiply(z[..., units:2 * units], cells[:, prev], out=c)
        c += z[..., :units] * z[..., 3 * units:]
        np.tanh(c, out=tanh_cells[:, begin:end])
        np.multiply(z[..., 2 * units:3 * units], tanh_cells[:, begin:end], out=states[:, begin:end])
    return states, cells, tanh_cells


def backward_on_one_thread(cache, d_sequences, d_finals):
    """The gradients of :func:`forward`'s outputs -> dx (B, T, D) and, per direction,
    (dkernel, drecurrent_kernel, dbias) in Keras's layout.

    d_sequences (K, B, T, U) or None: dL/d(sequences); d_finals (K, B, U): dL/d(finals).
    The gate-activation buffer is overwritten with dZ = dL/dz (K, N, G), then
    ``dW = X^T dZ``, ``dR = H_prev^T dZ``, ``db = sum dZ``, ``dX = dZ W^T`` (one product each,
    over the running pairs only).
    """
    plan, gates, inputs = cache["plan"], cache["gates"], cache["inputs"]
    d_states = None
    if d_sequences is not None:
        d_states = np.stack([d_sequences[k][plan.rows[plan.row], plan.positions[k]]
                             for k in range(len(d_sequences))])
    backward_steps(gates, cache, d_states, d_finals[:, plan.rows])
    previous = cache["states"][:, plan.previous]                           # (K, N, U): h_{j-1}
    d_kernel = np.matmul(inputs.transpose(0, 2, 1), gates)
    d_recurrent = np.matmul(previous.transpose(0, 2, 1), gates)
    d_bias = gates.sum(axis=1)
    dx = plan.scatter(np.matmul(gates, cache["kernel"].transpose(0, 2, 1))).sum(axis=0)
    restore = np.argsort(cache["order"])
    grads = [(d_kernel[i][:, restore], d_recurrent[i][:, restore], d_bias[i][restore]) for i in range(len(gates))]
    return dx, grads


def backward_steps(gates, cache, d_states, dh):
    """:func:`backward_steps_numpy`; float32 under the native backend runs
    ``native.lstm_backward`` (csrc/lstm.c) per direction, as :func:`forward_steps` does."""
    if not kernels.uses_native(gates):
        return backward_steps_numpy(gates, cache, d_states, dh)
    recurrent_t = cache["recurrent"].transpose(0, 2, 1).copy()          # (K, G, U)
    dh = np.ascontiguousarray(dh, dtype=gates.dtype).copy()
    dc = np.zeros_like(dh)
    each_direction(lambda d: native.lstm_backward(
        gates[d], recurrent_t[d], cache["cells"][d], cache["tanh_cells"][d],
        None if d_states is None else np.ascontiguousarray(d_states[d]), cache["plan"].offsets, dh[d], dc[d]),
        len(gates))


def backward_steps_numpy(gates, cache, d_states, dh):
    """Backpropagation through time, in place on packed pairs: gates (K, N, G) holds
    [i, f, o, g] on entry and dZ on exit.  d_states (K, N, U) or None: gradient of each
    pair's h from outside the recurrence; dh (K, B, U): gradient of each review's final h
    (sorted rows; a finished review's dh waits, untouched, for its last step).

        do = dh * tanh(c_j);            dc += dh * o * (1 - tanh(c_j)**2)
        di = dc * g;  df = dc * c_{j-1};  dg = dc * i;   dc_{j-1} = dc * f
        dz = [di i(1-i), df f(1-f), do o(1-o), dg (1-g**2)];   dh_{j-1} = dz R^T
    """
    units = gates.shape[-1] // 4
    recurrent_t = cache["recurrent"].transpose(0, 2, 1).copy()          # (K, G, U)
    cells, tanh_cells, plan = cache["cells"], cache["tanh_cells"], cache["plan"]
    offsets = plan.offsets
    dh = dh.copy()
    dc = np.zeros_like(dh)
    for j in range(len(offsets) - 2, -1, -1):
        begin, end = offsets[j], offsets[j + 1]
        n = end - begin
        prev = slice(offsets[j - 1], offsets[j - 1] + n) if j else slice(plan.size, plan.size + 1)  # row N: 0
        if d_states is not None:
            dh[:, :n] += d_states[:, begin:end]
        a = gates[:, begin:end]
        i, f, o, g = (a[..., s * units:(s + 1) * units] for s in range(4))
        tc = tanh_cells[:, begin:end]
        dhn, dcn = dh[:, :n], dc[:, :n]
        dcn += dhn * o * (1 - tc * tc)
        d_o = dhn * tc
        d_i = dcn * g
        d_g = dcn * i
        d_f = dcn * cells[:, prev]
        dcn *= f
        a[..., 3 * units:] = d_g * (1 - g * g)
        sig = a[..., :3 * units]
        sig *= 1 - sig
        i *= d_i
        f *= d_f
        o *= d_o
        dh[:, :n] = np.matmul(a, recurrent_t)
