"""Recurrent layers, forward and backpropagation through time by hand: ``LSTM`` and
``Bidirectional``, shaped as Keras's (the "Text classification with an RNN" tutorial's model).

Shapes: B reviews, T padded steps, D input width, U units.  Weights in Keras's layout and gate
order i, f, c, o (column blocks of width U): ``kernel`` W (D, 4U), ``recurrent_kernel``
R (U, 4U), ``bias`` b (4U,).

One step (CS231n's ``lstm_step_forward``; Keras's ``LSTMCell``), h_0 = c_0 = 0::

    z   = x_t W + h_{t-1} R + b                                   (B, 4U)
    i = sigmoid(z_i)   f = sigmoid(z_f)   g = tanh(z_c)   o = sigmoid(z_o)      (B, U) each
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

One step back, given dh_t (from the output at t and from step t+1) and dc_t (from step t+1)::

    do = dh_t * tanh(c_t)            dc = dc_t + dh_t * o * (1 - tanh(c_t)**2)
    di = dc * g    df = dc * c_{t-1}    dg = dc * i    dc_{t-1} = dc * f
    dz = [di i (1 - i), df f (1 - f), dg (1 - g**2), do o (1 - o)]          (B, 4U)
    dW += x_t^T dz    dR += h_{t-1}^T dz    db += sum_b dz    dx_t = dz W^T    dh_{t-1} = dz R^T

Backpropagation through time is that step run from t = T down to 1, carrying dh and dc.

**Mask** (``Embedding(mask_zero=True)``): m_t (B,) is 1 where step t holds a token.  As in
Keras, a masked step keeps the state: ``h_t = m_t h~_t + (1 - m_t) h_{t-1}`` (c likewise), h~
being the step's result; backward, m_t of dh_t, dc_t enters the step and (1 - m_t) of them
passes straight to h_{t-1}, c_{t-1}.  The output at a masked step is the kept h (or 0 with
``zero_output_for_mask``, which Bidirectional sets when it returns sequences).

**go_backwards**: the layer reads x[:, ::-1] (and the mask reversed), so on a right-padded
batch it meets the padding first; masked, it keeps its zero state there.  Its sequence output
is in its reading order.  **Bidirectional** runs a forward and a go_backwards copy, flips the
backward one's sequence back, and concatenates along the last axis (forward first).

Two implementations of the same arithmetic: the plain loop below (``lstm_forward``,
``lstm_backward``; the lesson's) and ``recurrent_fast`` (one input product for all steps,
fused gates, both directions in one loop, no work on padding), which the layers use whenever
the mask is None or right-padding; tests hold the two equal and both to finite differences.
"""
from __future__ import annotations

import copy

import numpy as np

from npembed import initializers, recurrent_fast
from npembed.layers import Layer, positive_int


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), written as (1 + tanh(z / 2)) / 2: the same function, no overflow."""
    return 0.5 * (1 + np.tanh(0.5 * z))


def lstm_step_forward(x, prev_h, prev_c, kernel, recurrent_kernel, bias):
    """One LSTM step.  x (B, D), prev_h (B, U), prev_c (B, U), kernel (D, 4U),
    recurrent_kernel (U, 4U), bias (4U,) -> next_h (B, U), next_c (B, U), cache."""
    units = prev_h.shape[1]
    z = x @ kernel + prev_h @ recurrent_kernel + bias
    i, f = sigmoid(z[:, :units]), sigmoid(z[:, units:2 * units])
    g, o = np.tanh(z[:, 2 * units:3 * units]), sigmoid(z[:, 3 * units:])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = (x, prev_h, prev_c, kernel, recurrent_kernel, i, f, g, o, tanh_c)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    """One step back.  dnext_h, dnext_c (B, U) -> dx (B, D), dprev_h (B, U), dprev_c (B, U),
    dkernel (D, 4U), drecurrent_kernel (U, 4U), dbias (4U,)."""
    x, prev_h, prev_c, kernel, recurrent_kernel, i, f, g, o, tanh_c = cache
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)
    do = dnext_h * tanh_c
    di, df, dg = dc * g, dc * prev_c, dc * i
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=1)
    return (dz @ kernel.T, dz @ recurrent_kernel.T, dc * f,
            x.T @ dz, prev_h.T @ dz, dz.sum(axis=0))


def lstm_forward(x, kernel, recurrent_kernel, bias, mask=None):
    """The recurrence over x (B, T, D) in reading order, mask (B, T) or None -> hs (B, T, U),
    the state h after every step (kept through masked steps), and the cache for backward."""
    batch, steps, _ = x.shape
    h = np.zeros((batch, recurrent_kernel.shape[0]), x.dtype)
    c = np.zeros_like(h)
    hs = np.zeros((batch, steps, h.shape[1]), x.dtype)
    caches = []
    for t in range(steps):
        next_h, next_c, step_cache = lstm_step_forward(x[:, t], h, c, kernel, recurrent_kernel, bias)
        if mask is not None:
            keep = mask[:, t, None]
            next_h, next_c = np.where(keep, next_h, h), np.where(keep, next_c, c)
        h, c = next_h, next_c
        hs[:, t] = h
        caches.append(step_cache)
    return hs, (caches, mask)


def lstm_backward(dhs, cache):
    """dhs (B, T, U): dL/dh_t from outside the recurrence (the outputs) -> dx (B, T, D),
    dkernel, drecurrent_kernel, dbias.  Backpropagation through time, t = T .. 1."""
    caches, mask = cache
    x0, _, _, kernel, recurrent_kernel = caches[0][:5]
    dx = np.zeros((dhs.shape[0], len(caches), kernel.shape[0]), dhs.dtype)
    grads = [np.zeros_like(kernel), np.zeros_like(recurrent_kernel), np.zeros(kernel.shape[1], dhs.dtype)]
    dh = np.zeros_like(dhs[:, 0])
    dc = np.zeros_like(dh)
    for t in range(len(caches) - 1, -1, -1):
        dh = dh + dhs[:, t]
        keep = np.ones((dh.shape[0], 1), bool) if mask is None else mask[:, t, None]
        step_dh, step_dc = np.where(keep, dh, 0), np.where(keep, dc, 0)
        dx[:, t], dprev_h, dprev_c, *step_grads = lstm_step_backward(step_dh, step_dc, caches[t])
        dh = dprev_h + np.where(keep, 0, dh)
        dc = dprev_c + np.where(keep, 0, dc)
        for total, step in zip(grads, step_grads):
            total += step
    return (dx, *grads)


class LSTM(Layer):
    """Keras's ``LSTM(units, return_sequences=False, go_backwards=False)`` (tanh, sigmoid,
    ``unit_forget_bias``), on x (B, T, D) -> (B, U), or (B, T, U) with ``return_sequences``.

    Parameters: ``kernel`` (D, 4U) glorot-uniform, ``recurrent_kernel`` (U, 4U) orthogonal,
    ``bias`` (4U,) zeros but ones on the forget gate's block.  The maths: this module's
    docstring.  ``fast=False`` runs the plain reference loop instead of ``recurrent_fast``.
    """

    def __init__(self, units: int, return_sequences: bool = False, go_backwards: bool = False,
                 name: str | None = None):
        super().__init__(name)
        self.units = positive_int(units, f"LSTM needs a positive integer number of units, got {units!r}")
        for flag, value in (("return_sequences", return_sequences), ("go_backwards", go_backwards)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"LSTM's {flag} must be True or False, got {value!r}")
        self.return_sequences = bool(return_sequences)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = False
        self.fast = True

    def build(self, input_width, rng, dtype):
        super().build(input_width, rng, dtype)
        u = self.units
        self.params["kernel"] = initializers.glorot_uniform((input_width, 4 * u), rng, dtype)
        self.params["recurrent_kernel"] = initializers.orthogonal((u, 4 * u), rng, dtype)
        self.params["bias"] = np.concatenate([np.zeros(u), np.ones(u), np.zeros(2 * u)]).astype(dtype)
        return u

    def weights_tuple(self):
        return self.params["kernel"], self.params["recurrent_kernel"], self.params["bias"]

    def forward(self, x, mask=None):
        """x (B, T, D), mask (B, T) or None -> (B, U) or (B, T, U)."""
        return run_forward([self], x, mask)[0]

    def backward(self, dout):
        """dout (B, U) or (B, T, U) -> dx (B, T, D); fills grads."""
        return run_backward([self], [dout], self.cache)

    def compute_mask(self, inputs, mask):
        return mask if self.return_sequences else None

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} takes (batch, steps, features), got rank {len(input_shape)}")
        return (*input_shape[:2], self.units) if self.return_sequences else (input_shape[0], self.units)

    # the reference loop, one direction --------------------------------------------------------
    def reference_forward(self, x, mask):
        """The plain loop: x read in this layer's order, then Keras's output."""
        xs = x[:, ::-1] if self.go_backwards else x
        ms = None if mask is None else (mask[:, ::-1] if self.go_backwards else mask)
        hs, cache = lstm_forward(xs, *self.weights_tuple(), ms)
        self.cache = {"reference": cache, "mask": ms, "shape": x.shape}
        if not self.return_sequences:
            return hs[:, -1]
        return hs * ms[..., None] if (ms is not None and self.zero_output_for_mask) else hs

    def reference_backward(self, dout):
        ms, shape = self.cache["mask"], self.cache["shape"]
        dhs = np.zeros((shape[0], shape[1], self.units), dout.dtype)
        if not self.return_sequences:
            dhs[:, -1] = dout
        else:
            dhs[...] = dout * ms[..., None] if (ms is not None and self.zero_output_for_mask) else dout
        dxs, *grads = lstm_backward(dhs, self.cache["reference"])
        self.grads.update(zip(("kernel", "recurrent_kernel", "bias"), grads))
        return dxs[:, ::-1] if self.go_backwards else dxs


def run_forward(lstms, x, mask):
    """Each LSTM of ``lstms`` (one, or Bidirectional's two) over x; returns each one's Keras
    output.  One fast run for all of them when the mask allows it, else the reference loop."""
    if not all(layer.fast for layer in lstms) or (mask is not None and not recurrent_fast.is_prefix_mask(mask)):
        for layer in lstms:
            layer.cache = {}
        outputs = [layer.reference_forward(x, mask) for layer in lstms]
        lstms[0].cache["joint"] = None
        return outputs
    keep = any(layer.return_sequences for layer in lstms)
    finals, sequences, cache = recurrent_fast.forward(x, mask, [layer.weights_tuple() for layer in lstms],
                                                      [layer.go_backwards for layer in lstms], keep)
    outputs = [_keras_output(layer, finals[k], None if sequences is None else sequences[k], mask)
               for k, layer in enumerate(lstms)]
    lstms[0].cache = {"joint": cache, "mask": mask}
    return outputs


def _keras_output(layer, final, aligned, mask):
    """One direction's Keras output from the fast run: its final h, or its sequence, aligned
    (B, T, U) -> Keras's: the kept state after a forward layer's last token (unless
    ``zero_output_for_mask``), and a go_backwards layer's sequence in its reading order."""
    if not layer.return_sequences:
        return final
    out = aligned
    if _carries_final(layer, mask):
        out = np.where(mask[..., None], aligned, final[:, None, :])
    return out[:, ::-1] if layer.go_backwards else out


def _carries_final(layer, mask) -> bool:
    return mask is not None and not layer.go_backwards and not layer.zero_output_for_mask


def run_backward(lstms, douts, cache):
    """The backward of :func:`run_forward`: each layer's dout -> dx (B, T, D) summed over the
    layers; fills each layer's grads."""
    if not cache:
        raise RuntimeError(f"{lstms[0].name}: backward() needs a forward() of the same batch first")
    _check_douts(lstms, douts, cache)
    joint = cache.get("joint")
    if joint is None:
        return sum(layer.reference_backward(dout) for layer, dout in zip(lstms, douts))
    mask = cache["mask"]
    batch, seq_len = joint["x_shape"][:2]
    finals = np.zeros((len(lstms), batch, lstms[0].units), douts[0].dtype)
    sequences = None
    for k, (layer, dout) in enumerate(zip(lstms, douts)):
        if not layer.return_sequences:
            finals[k] = dout
            continue
        if sequences is None:
            sequences = np.zeros((len(lstms), batch, seq_len, layer.units), dout.dtype)
        aligned = dout[:, ::-1] if layer.go_backwards else dout
        if _carries_final(layer, mask):
            finals[k] = np.where(mask[..., None], 0, aligned).sum(axis=1)
        sequences[k] = aligned
    dx, grads = recurrent_fast.backward(joint, sequences, finals)
    for layer, layer_grads in zip(lstms, grads):
        layer.grads.update(zip(("kernel", "recurrent_kernel", "bias"), layer_grads))
    return dx


def _check_douts(lstms, douts, cache) -> None:
    """ValueError unless each dout has its layer's output shape for the batch of the forward
    (NumPy would broadcast a (1, U) dout over the batch without a word)."""
    joint = cache.get("joint")
    batch, seq_len = (joint["x_shape"] if joint is not None else cache["shape"])[:2]
    for layer, dout in zip(lstms, douts):
        expected = (batch, seq_len, layer.units) if layer.return_sequences else (batch, layer.units)
        if np.shape(dout) != expected:
            raise ValueError(f"{layer.name}: backward() takes dout of shape {expected} (its output's), "
                             f"got {np.shape(dout)}")


class Bidirectional(Layer):
    """Keras's ``Bidirectional(layer, merge_mode="concat")``: ``layer`` reads forwards, a copy
    with ``go_backwards`` flipped reads backwards; output ``concat([y, flip(y_rev)], -1)``
    (B, 2U), or (B, T, 2U) with ``return_sequences``, where the copy's sequence is flipped
    back so that both halves of entry t describe step t.

    Weights: the forward layer's three, then the backward layer's (Keras's order), named
    ``forward_<name>/kernel`` ... ``backward_<name>/bias``.  Backward: dout splits into its two
    halves, each goes back through its layer, and the two dx add (both read the same x).
    With ``return_sequences`` both layers output zeros at masked steps, as Keras forces
    (``zero_output_for_mask``).
    """

    def __init__(self, layer: LSTM, merge_mode: str = "concat", name: str | None = None):
        if not isinstance(layer, LSTM):
            raise TypeError(f"Bidirectional wraps an LSTM, got {type(layer).__name__}")
        if merge_mode != "concat":
            raise ValueError(f"only merge_mode='concat' is implemented, got {merge_mode!r}")
        super().__init__(name or "bidirectional")
        self.forward_layer = layer
        self.backward_layer = copy.deepcopy(layer)
        self.backward_layer.go_backwards = not layer.go_backwards
        self.forward_layer.name, self.backward_layer.name = f"forward_{layer.name}", f"backward_{layer.name}"
        self.return_sequences = layer.return_sequences
        for sub in self.layers:
            sub.zero_output_for_mask = self.return_sequences
        self.merge_mode = merge_mode

    @property
    def layers(self) -> list[LSTM]:
        return [self.forward_layer, self.backward_layer]

    def build(self, input_width, rng, dtype):
        super().build(input_width, rng, dtype)
        for sub in self.layers:
            sub.build(input_width, rng, dtype)
        self.params = {f"{sub.name}/{key}": value for sub in self.layers for key, value in sub.params.items()}
        return 2 * self.forward_layer.units

    def forward(self, x, mask=None):
        """x (B, T, D), mask (B, T) or None -> (B, 2U) or (B, T, 2U)."""
        y, y_rev = run_forward(self.layers, x, mask)
        if self.return_sequences:
            y_rev = y_rev[:, ::-1]
        self.cache = self.forward_layer.cache
        return np.concatenate([y, y_rev], axis=-1)

    def backward(self, dout):
        """dout (B, 2U) or (B, T, 2U) -> dx (B, T, D); fills grads for both layers."""
        units = self.forward_layer.units
        dy, dy_rev = dout[..., :units], dout[..., units:]
        if self.return_sequences:
            dy_rev = dy_rev[:, ::-1]
        dx = run_backward(self.layers, [dy, dy_rev], self.cache)
        self.grads = {f"{sub.name}/{key}": sub.grads[key] for sub in self.layers for key in sub.params}
        return dx

    def compute_mask(self, inputs, mask):
        return mask if self.return_sequences else None

    def output_shape(self, input_shape):
        shape = self.forward_layer.output_shape(input_shape)
        return (*shape[:-1], 2 * shape[-1])

    @property
    def fast(self) -> bool:
        return self.forward_layer.fast

    @fast.setter
    def fast(self, value: bool) -> None:
        for sub in self.layers:
            sub.fast = bool(value)
