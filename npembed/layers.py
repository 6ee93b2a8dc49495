"""The tutorial's three layers, forward and backward, by hand.

Every layer follows one contract (joelnet / CS231n style):

- ``params`` and ``grads`` are dicts with the same keys, the Keras weight names, in Keras's
  ``get_weights()`` order;
- ``forward(x, mask=None)`` returns the output and keeps in ``self.cache`` what backward needs;
- ``backward(dout)`` takes dL/d(output), fills ``self.grads`` (it never updates a weight) and
  returns dL/d(input), or ``None`` for integer token ids;
- ``compute_mask(inputs, mask)`` says what mask the next layer receives, as in Keras.

Shapes use B = batch size, L = padded sequence length, V = vocabulary size (``input_dim``),
D = embedding width (``output_dim``), H = units.  docs/gradients.md derives every backward.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from npembed import initializers
from npembed.checks import check_no_empty_rows, check_token_ids
from npembed.sparse import IndexedSlices


class Layer:
    """Base class: named parameters, their gradients, and the forward/backward contract."""

    def __init__(self, name: str | None = None):
        self.name = name or _snake_case(type(self).__name__)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.cache: dict[str, Any] = {}
        self.dtype = np.dtype(np.float32)
        self.built = False

    def build(self, input_width: int | None, rng: np.random.Generator, dtype: np.dtype) -> int | None:
        """Create the weights for inputs whose last axis is ``input_width``; return the
        output's last-axis width."""
        self.dtype = dtype
        self.built = True
        return input_width

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def compute_mask(self, inputs: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The mask passed on to the next layer (Keras's default: pass it through)."""
        return mask

    def count_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def output_shape(self, input_shape: tuple) -> tuple:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Embedding(Layer):
    """A lookup table: row ``ids[b, t]`` of ``embeddings`` for every position.

    Parameters: ``embeddings`` (V, D), initialised U(-0.05, 0.05) as in Keras.

    Notes
    -----
    Forward:  ``out[b, t, :] = E[ids[b, t], :]``            ids (B, L) int -> out (B, L, D)

    Backward: ``dE[r, :] = sum_{(b, t): ids[b, t] = r} dout[b, t, :]``   (scatter-add; a token
    repeated k times in the batch receives k slices, and the padding id 0 receives one slice per
    padding position unless the layer masks).  The same gradient in TensorFlow's sparse form,
    one slice per position, is kept in ``self.sparse_grads['embeddings']``.  Ids get no gradient.

    With ``mask_zero=True`` the layer also emits the mask ``ids != 0`` for the pooling layer; the
    padding row still exists and is still trained by whatever gradient reaches it (zero here,
    since the masked average gives padding positions zero weight).
    """

    def __init__(self, input_dim: int, output_dim: int, mask_zero: bool = False, name: str | None = None):
        super().__init__(name)
        if int(input_dim) != input_dim or input_dim < 1 or int(output_dim) != output_dim or output_dim < 1:
            raise ValueError(f"Embedding needs positive integer input_dim and output_dim, got "
                             f"input_dim={input_dim!r}, output_dim={output_dim!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.mask_zero = bool(mask_zero)
        self.sparse_grads: dict[str, IndexedSlices] = {}

    def build(self, input_width, rng, dtype):
        super().build(input_width, rng, dtype)
        self.params["embeddings"] = initializers.random_uniform((self.input_dim, self.output_dim), rng, dtype)
        return self.output_dim

    def forward(self, ids, mask=None):
        """ids (B, L) ints in [0, V) -> (B, L, D)."""
        ids = check_token_ids(ids, self.input_dim)
        self.cache = {"ids": ids}
        return self.params["embeddings"][ids]

    def backward(self, dout):
        """dout (B, L, D) -> None; fills grads['embeddings'] (V, D) and its sparse form."""
        ids = self.cache["ids"]
        slices = IndexedSlices(values=dout.reshape(-1, self.output_dim),
                               indices=ids.reshape(-1),
                               dense_shape=(self.input_dim, self.output_dim))
        self.sparse_grads["embeddings"] = slices
        self.grads["embeddings"] = slices.to_dense()
        return None

    def compute_mask(self, inputs, mask):
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def output_shape(self, input_shape):
        return (*input_shape, self.output_dim)


class GlobalAveragePooling1D(Layer):
    """Average over the time axis.

    Notes
    -----
    Without a mask the average runs over the *padded* length L of the batch, so padding
    positions count (the tutorial's model does this: a review padded with many zeros is pulled
    towards the padding row's vector):

        forward:  ``out[b] = (1 / L) * sum_t x[b, t]``          x (B, L, D) -> out (B, D)
        backward: ``dx[b, t] = dout[b] / L``

    With the embedding's mask ``m[b, t] = (ids[b, t] != 0)`` and ``n[b] = sum_t m[b, t]``:

        forward:  ``out[b] = (1 / n[b]) * sum_t m[b, t] * x[b, t]``
        backward: ``dx[b, t] = m[b, t] * dout[b] / n[b]``

    A masked row with no token at all has no average (Keras returns NaN): it raises here.

    The sum over t is accumulated in float64 and rounded once to the input's dtype: a float32
    running sum over thousands of positions (NumPy's strided reduction is sequential) would
    lose about L * 2**-24 of the result, several times more than TensorFlow's tree reduction.
    """

    def forward(self, x, mask=None):
        """x (B, L, D), mask (B, L) bool or None -> (B, D)."""
        if mask is None:
            self.cache = {"seq_len": x.shape[1]}
            return (x.sum(axis=1, dtype=np.float64) / x.shape[1]).astype(x.dtype)
        counts = mask.sum(axis=1)
        check_no_empty_rows(counts)
        mask_f = mask.astype(x.dtype)                                  # (B, L)
        counts_f = counts.astype(x.dtype)[:, None]                     # (B, 1)
        self.cache = {"seq_len": x.shape[1], "mask": mask_f, "counts": counts_f}
        total = np.einsum("bt,btd->bd", mask_f, x, dtype=np.float64)
        return (total / counts_f).astype(x.dtype)

    def backward(self, dout):
        """dout (B, D) -> dx (B, L, D)."""
        seq_len, mask_f = self.cache["seq_len"], self.cache.get("mask")
        if mask_f is None:
            return np.broadcast_to((dout / seq_len)[:, None, :], (dout.shape[0], seq_len, dout.shape[1]))
        return mask_f[:, :, None] * (dout / self.cache["counts"])[:, None, :]

    def compute_mask(self, inputs, mask):
        return None

    def output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


class Dense(Layer):
    """A fully connected layer, optionally followed by ReLU.

    Parameters: ``kernel`` (in, H) glorot-uniform, ``bias`` (H,) zeros, as in Keras.

    Notes
    -----
    Forward:  ``z = x @ W + b``;  ``out = relu(z) = max(z, 0)`` or ``out = z``.
              x (B, in) -> out (B, H)
    Backward: ``dz = dout * [z > 0]`` (ReLU's gradient is taken as 0 at exactly z = 0, as
              TensorFlow's ReluGrad does) or ``dz = dout``;
              ``dW = x.T @ dz`` (in, H),  ``db = sum_b dz[b]`` (H,),  ``dx = dz @ W.T`` (B, in).
    """

    ACTIVATIONS = (None, "linear", "relu")

    def __init__(self, units: int, activation: str | None = None, name: str | None = None):
        super().__init__(name)
        if int(units) != units or units < 1:
            raise ValueError(f"Dense needs a positive integer number of units, got {units!r}")
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be one of {self.ACTIVATIONS}, got {activation!r}")
        self.units = int(units)
        self.activation = None if activation == "linear" else activation

    def build(self, input_width, rng, dtype):
        super().build(input_width, rng, dtype)
        self.params["kernel"] = initializers.glorot_uniform((input_width, self.units), rng, dtype)
        self.params["bias"] = initializers.zeros((self.units,), dtype)
        return self.units

    def forward(self, x, mask=None):
        """x (B, in) -> (B, H)."""
        z = x @ self.params["kernel"] + self.params["bias"]
        self.cache = {"x": x, "z": z}
        return np.maximum(z, 0) if self.activation == "relu" else z

    def backward(self, dout):
        """dout (B, H) -> dx (B, in); fills grads['kernel'], grads['bias']."""
        x, z = self.cache["x"], self.cache["z"]
        dz = dout * (z > 0) if self.activation == "relu" else dout
        self.grads["kernel"] = x.T @ dz
        self.grads["bias"] = dz.sum(axis=0)
        return dz @ self.params["kernel"].T

    def output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)


def _snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper() and not name[i - 1].isdigit():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
