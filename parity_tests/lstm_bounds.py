"""A first-order bound on the float32 rounding error of an LSTM's final state, and how it
grows with the number of steps.

Any computation y = F(v_1, ..., v_n) whose intermediates v_k are each rounded with a local
error of at most d_k (|fl(op) - op| <= d_k, the operation's own rounding, its inputs taken as
computed) has, to first order in the unit roundoff u,

    |y_computed - y| <= sum_k |dy/dv_k| d_k  + O(u**2)

(S. Linnainmaa, "Taylor expansion of the accumulated rounding error", BIT 16 (1976) 146-160;
N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., sections 3.3 and
3.4: the linearised forward error is the sum of the local errors weighted by the derivatives).
The derivatives dy/dv_k are exactly what backpropagation through time computes: this module
runs BPTT in float64 with one unit seed per output entry and sums |adjoint| * local error
over every step.  So the bound *is* the statement of how the recurrence's rounding grows with
the number of steps: the local errors of step t reach the final state weighted by
|dh_T / d(state_t)|, a product of T - t step Jacobians.  While the LSTM contracts (forget gates
below 1, saturated gates) those weights decay geometrically and the bound stays about constant
as T grows; where it does not, it grows, and the bound says by how much.

Local errors (u = 2**-24; an ulp of a value is at most 2u times it; transcendental functions
within TRANSCENDENTAL_ULPS ulps, as parity_tests/bounds.py allows):
    z = x W + h R + b          gamma(D + U + 2) (|x| |W| + |h| |R| + |b|)    (two products, two adds)
    sigmoid(z) = s             max(8u s, 4u |2 s - 1| + 2u s)  (Eigen's logistic, or npembed's
                               (1 + tanh(z/2)) / 2, whose 1 + tanh cancels: an absolute 4u)
    g = tanh(z_c), tanh(c)     8u |value|
    c = f c' + i g             u (|f c'| + |i g|) + u |c|
    h = o tanh(c)              u |h|
A masked step copies the state: no rounding.
"""
from __future__ import annotations

import numpy as np

from parity_tests.bounds import TRANSCENDENTAL_ULPS, gamma


def final_state_bound(x, kernel, recurrent_kernel, bias, mask, u):
    """x (B, T, D) in reading order (exact inputs), mask (B, T) or None -> (h_T (B, U) in
    float64, its first-order error bound (B, U))."""
    x, w, r, b = (np.asarray(a, dtype=np.float64) for a in (x, kernel, recurrent_kernel, bias))
    steps = _forward(x, w, r, b, mask, u)
    batch, units = x.shape[0], r.shape[0]
    seeds = np.eye(units)[:, None, :] * np.ones((1, batch, 1))            # (S = U, B, U)
    dh, dc = seeds, np.zeros_like(seeds)
    bound = np.zeros((units, batch))
    for step in reversed(steps):
        keep = step["keep"][None, :, None]
        contribution, dh_prev, dc_prev = _step_back(step, dh, dc, r, u)
        bound += np.where(step["keep"][None, :], contribution, 0)
        dh = np.where(keep, dh_prev, dh)
        dc = np.where(keep, dc_prev, dc)
    return steps[-1]["h_out"], bound.T


def _forward(x, w, r, b, mask, u):
    batch, length, width = x.shape
    units = r.shape[0]
    h, c = np.zeros((batch, units)), np.zeros((batch, units))
    sig = lambda z: np.exp(-np.logaddexp(0, -z))  # noqa: E731
    transcendental = TRANSCENDENTAL_ULPS * 2 * u
    steps = []
    for t in range(length):
        z = x[:, t] @ w + h @ r + b
        z_error = gamma(width + units + 2, u) * (np.abs(x[:, t]) @ np.abs(w) + np.abs(h) @ np.abs(r) + np.abs(b))
        i, f, o = sig(z[:, :units]), sig(z[:, units:2 * units]), sig(z[:, 3 * units:])
        g = np.tanh(z[:, 2 * units:3 * units])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        s_error = lambda s: np.maximum(transcendental * s, 4 * u * np.abs(2 * s - 1) + 2 * u * s)  # noqa: E731
        keep = np.ones(batch, bool) if mask is None else np.asarray(mask[:, t], bool)
        steps.append(dict(keep=keep, z_error=z_error, i=i, f=f, o=o, g=g, tc=tc, c_prev=c,
                          i_error=s_error(i), f_error=s_error(f), o_error=s_error(o),
                          g_error=transcendental * np.abs(g), tc_error=transcendental * np.abs(tc),
                          c_error=u * (np.abs(f * c) + np.abs(i * g)) + u * np.abs(c_new),
                          h_error=u * np.abs(h_new)))
        h = np.where(keep[:, None], h_new, h)
        c = np.where(keep[:, None], c_new, c)
        steps[-1]["h_out"] = h
    return steps


def _step_back(step, dh, dc, r, u):
    """One step of BPTT for all seeds (S, B, U) -> sum_k |adjoint_k| d_k (S, B), dh_prev, dc_prev."""
    i, f, o, g, tc = step["i"], step["f"], step["o"], step["g"], step["tc"]
    total = np.sum(np.abs(dh) * step["h_error"], axis=-1)
    dtc = dh * o
    total += np.sum(np.abs(dtc) * step["tc_error"], axis=-1)
    dcell = dc + dtc * (1 - tc ** 2)
    total += np.sum(np.abs(dcell) * step["c_error"], axis=-1)
    di, df, dg, do = dcell * g, dcell * step["c_prev"], dcell * i, dh * tc
    for adjoint, error in ((di, "i_error"), (df, "f_error"), (dg, "g_error"), (do, "o_error")):
        total += np.sum(np.abs(adjoint) * step[error], axis=-1)
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=-1)
    total += np.sum(np.abs(dz) * step["z_error"], axis=-1)
    return total, dz @ r.T, dcell * f
