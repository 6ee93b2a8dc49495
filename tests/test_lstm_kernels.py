"""The C recurrence (csrc/lstm.c) against the NumPy loop it replaces (recurrent_fast's
``forward_steps_numpy`` / ``backward_steps_numpy``), in float32, masked and unmasked, both
directions, on real-shaped batches (64 units, reviews of different lengths).

The two are not bit for bit: the recurrent product sums in another order and the C tanh is not
NumPy's.  The bounds, derived, not fitted:

- forward: each path's final state is within ``lstm_bounds.final_state_bound`` (first order in
  u = 2^-24: every local rounding weighted by its BPTT adjoint; sums of D + U + 2 terms in any
  order; tanh within 4 ulps, which covers NumPy's and csrc's, the latter within 1 ulp on all
  float32 inputs) of the exact result; so the two are within twice that of each other.
- backward, from the same forward cache: the element-wise expressions are the same, in the
  same order; what differs is dh_{j-1} = dz R^T (G terms each, gamma(G) sum |dz||R| from the
  exact sum for either path) and then everything downstream of it.  :func:`backward_bound`
  propagates that difference with the absolute value of each step's (linear) backward map,
  plus 2 x 4u |value| per element-wise result (at most 4 roundings per expression, in each of
  the two paths).  It grows with the steps as the absolute backward map lets it (faster than
  the real difference: over 20 steps the bound's median is 3% of |dz| unmasked, 0.4% masked,
  and the measured differences stay below 1/80 of the bound; hence 20 steps here).
float64 never reaches C (the last test).
"""
from __future__ import annotations

import numpy as np
import pytest

from npembed import kernels, recurrent_fast
from parity_tests.bounds import gamma
from parity_tests.lstm_bounds import final_state_bound

U32 = 2.0 ** -24
B, T, D, UNITS = 12, 20, 64, 64
LENGTHS = np.array([20, 20, 18, 15, 13, 11, 9, 7, 5, 3, 2, 1])


def weights(seed):
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6 / (D + 4 * UNITS))
    kernel = rng.uniform(-limit, limit, (D, 4 * UNITS))
    recurrent = np.linalg.qr(rng.standard_normal((4 * UNITS, UNITS)))[0].T        # orthogonal rows
    bias = np.r_[np.zeros(UNITS), np.ones(UNITS), np.zeros(2 * UNITS)]
    return tuple(a.astype(np.float32) for a in (kernel, recurrent, bias))


def batch(masked):
    x = np.random.default_rng(5).normal(0, 0.5, (B, T, D)).astype(np.float32)
    return x, (np.arange(T)[None, :] < LENGTHS[:, None]) if masked else None


@pytest.fixture
def backend():
    before = kernels.backend()
    kernels.set_backend("native")
    yield kernels.set_backend
    kernels.set_backend(before)


def reading_order(x, mask, backwards):
    """x as a direction reads it: reversed within each review's length when backwards."""
    if not backwards:
        return x
    lengths = np.full(len(x), x.shape[1]) if mask is None else mask.sum(axis=1)
    out = np.zeros_like(x)
    for b, n in enumerate(lengths):
        out[b, :n] = x[b, :n][::-1]
    return out


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_forward_c_equals_numpy_within_twice_the_rounding_bound(masked, backend):
    x, mask = batch(masked)
    w = [weights(1), weights(2)]
    finals = {}
    for name in ("numpy", "native"):
        backend(name)
        finals[name], _, _ = recurrent_fast.forward(x, mask, w, (False, True), False)
    for k, backwards in enumerate((False, True)):
        exact, bound = final_state_bound(reading_order(x, mask, backwards), *w[k], mask, U32)
        difference = np.abs(finals["native"][k].astype(np.float64) - finals["numpy"][k])
        assert np.all(difference <= 2 * bound), (k, (difference / bound).max())
        assert np.abs(finals["native"][k] - exact).max() < 1e-5          # and both near the float64 state


def backward_bound(cache, d_states, dh, activations):
    """(K, N, G): how far the two paths' dz may lie apart, given the same forward cache.  Runs
    the backward in float64 beside the error (e_h, e_c) that it carries, step by step."""
    plan, units = cache["plan"], dh.shape[-1]
    r = cache["recurrent"].astype(np.float64).transpose(0, 2, 1)                      # (K, G, U)
    a, cells, tc = (cache[k].astype(np.float64) if k != "gates" else activations.astype(np.float64)
                    for k in ("gates", "cells", "tanh_cells"))
    dh, dc = dh.astype(np.float64), np.zeros(dh.shape)
    e_h, e_c, bound = np.zeros(dh.shape), np.zeros(dh.shape), np.zeros(a.shape)
    for j in range(len(plan.offsets) - 2, -1, -1):
        begin, end = plan.offsets[j], plan.offsets[j + 1]
        n = end - begin
        prev = slice(plan.offsets[j - 1], plan.offsets[j - 1] + n) if j else slice(plan.size, plan.size + 1)
        i, f, o, g = (a[:, begin:end, s * units:(s + 1) * units] for s in range(4))
        t, c_prev = tc[:, begin:end], cells[:, prev]
        if d_states is not None:
            dh[:, :n] += d_states[:, begin:end]
        dcell = dc[:, :n] + dh[:, :n] * o * (1 - t * t)
        dz = np.concatenate([dcell * g * i * (1 - i), dcell * c_prev * f * (1 - f), dh[:, :n] * t * o * (1 - o),
                             dcell * i * (1 - g * g)], axis=-1)
        eh = e_h[:, :n] + 8 * U32 * np.abs(dh[:, :n])
        ec = e_c[:, :n] + eh * np.abs(o * (1 - t * t)) + 8 * U32 * np.abs(dcell)
        error = np.concatenate([ec * np.abs(g * i * (1 - i)), ec * np.abs(c_prev * f * (1 - f)),
                                eh * np.abs(t * o * (1 - o)), ec * np.abs(i * (1 - g * g))], axis=-1)
        bound[:, begin:end] = error + 8 * U32 * np.abs(dz)
        e_c[:, :n], dc[:, :n] = ec * np.abs(f) + 8 * U32 * np.abs(dcell * f), dcell * f
        e_h[:, :n] = bound[:, begin:end] @ np.abs(r) + 2 * gamma(4 * units, U32) * (np.abs(dz) @ np.abs(r))
        dh[:, :n] = dz @ r
    return bound


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("sequences", [False, True], ids=["last", "sequences"])
def test_backward_c_equals_numpy_within_the_propagated_bound(masked, sequences, backend):
    x, mask = batch(masked)
    backend("numpy")
    _, _, cache = recurrent_fast.forward(x, mask, [weights(1), weights(2)], (False, True), False)
    rng = np.random.default_rng(7)
    n = cache["plan"].size
    d_states = rng.normal(0, 0.1, (2, n, UNITS)).astype(np.float32) if sequences else None
    dh = rng.normal(0, 1, (2, B, UNITS)).astype(np.float32)
    activations = cache["gates"].copy()
    dz = {}
    for name in ("numpy", "native"):
        backend(name)
        gates = activations.copy()
        recurrent_fast.backward_steps(gates, dict(cache, gates=gates), d_states, dh)
        dz[name] = gates
    bound = backward_bound(cache, d_states, dh, activations)
    difference = np.abs(dz["native"].astype(np.float64) - dz["numpy"])
    assert np.all(difference <= bound), (difference / np.maximum(bound, 1e-300)).max()
    moving = np.abs(dz["numpy"]) > 0
    assert np.median(bound[moving] / np.abs(dz["numpy"][moving])) < 0.1   # tight enough to catch a wrong step


def test_float64_never_reaches_c(backend, monkeypatch):
    from npembed import native

    def refuse(*args):
        raise AssertionError("float64 reached the C kernel")
    monkeypatch.setattr(native, "lstm_forward", refuse)
    monkeypatch.setattr(native, "lstm_backward", refuse)
    x, mask = batch(True)
    w = [tuple(a.astype(np.float64) for a in weights(1))]
    finals, _, cache = recurrent_fast.forward(x.astype(np.float64), mask, w, (False,), False)
    recurrent_fast.backward(cache, None, np.ones_like(finals))


def test_the_binding_refuses_bad_buffers(backend):
    from npembed import native
    units, size = 4, 5
    gates = np.zeros((size, 4 * units), np.float32)
    recurrent = np.zeros((units, 4 * units), np.float32)
    states, cells = np.zeros((2, size + 1, units), np.float32)
    tanh_cells = np.zeros((size, units), np.float32)
    native.lstm_forward(gates, recurrent, np.array([0, 3, 5]), states, cells, tanh_cells)     # counts 3, 2: fine
    with pytest.raises(ValueError, match="packed steps"):
        native.lstm_forward(gates, recurrent, np.array([0, 2, 5]), states, cells, tanh_cells)  # counts grow
    with pytest.raises(ValueError, match="packed steps"):
        native.lstm_forward(gates, recurrent, np.array([0, 3, 4]), states, cells, tanh_cells)  # misses a pair
    with pytest.raises(ValueError, match="states"):
        native.lstm_forward(gates, recurrent, np.array([0, 3, 5]), states[:-1], cells, tanh_cells)
    with pytest.raises(TypeError, match="float32"):
        native.lstm_forward(gates.astype(np.float64), recurrent, np.array([0, 3, 5]), states, cells, tanh_cells)
    dh, dc = np.zeros((2, 2, units), np.float32)                                    # 2 rows: step 0 has 3
    with pytest.raises(ValueError, match="packed steps"):
        native.lstm_backward(gates, recurrent.T.copy(), cells, tanh_cells, None, np.array([0, 3, 5]), dh, dc)
