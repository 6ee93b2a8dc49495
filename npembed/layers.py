"""The tutorial's three layers, forward and backward, by hand, and the two first ones fused.

Every layer follows one contract (joelnet / CS231n style):

- ``params`` and ``grads`` are dicts with the same keys, the Keras weight names, in Keras's
  ``get_weights()`` order;
- ``forward(x, mask=None)`` returns the output and keeps in ``self.cache`` what backward needs;
- ``backward(dout)`` takes dL/d(output), fills ``self.grads`` (it never updates a weight) and
  returns dL/d(input), or ``None`` for integer token ids;
- ``compute_mask(inputs, mask)`` says what mask the next layer receives, as in Keras.

A gradient in ``grads`` is an array shaped like its weight, except an embedding table's: that
one stays in the sparse form TensorFlow's tape returns, one slice per looked-up position
(``sparse.IndexedSlices``, or ``sparse.PooledSlices`` from ``PooledEmbedding``); its
``to_dense()`` is the (V, D) array, and the optimizer reads its row sums.

Shapes use B = batch size, L = padded sequence length, V = vocabulary size (``input_dim``),
D = embedding width (``output_dim``), H = units.  docs/gradients.md derives every backward.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from npembed import initializers, kernels
from npembed.checks import check_no_empty_rows, check_token_ids, is_integer
from npembed.sparse import IndexedSlices, PooledSlices


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

    def state(self) -> dict:
        """Numbers other than weights that this layer needs to resume exactly (checkpoints save
        them); none for most layers."""
        return {}

    def load_state(self, state: dict) -> None:
        """Take back :meth:`state`; ValueError, and nothing changed, for one that does not fit."""
        if state:
            raise ValueError(f"layer {self.name} keeps no state, got {sorted(state)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Embedding(Layer):
    """A lookup table: row ``ids[b, i]`` of ``embeddings`` for every position.

    Parameters: ``embeddings`` (V, D), initialised U(-0.05, 0.05) as in Keras.

    Notes
    -----
    Forward:  ``out[b, i, :] = E[ids[b, i], :]``            ids (B, L) int -> out (B, L, D)

    Backward: ``dE[r, :] = sum_{(b, i): ids[b, i] = r} dout[b, i, :]``   (scatter-add; a token
    repeated q times in the batch receives q slices, and the padding id 0 receives one slice per
    padding position unless the layer masks).  ``grads['embeddings']`` keeps the slices apart,
    as TensorFlow does: an ``IndexedSlices`` with ``values = dout.reshape(B*L, D)`` and
    ``indices = ids.reshape(B*L)``; its ``to_dense()`` is the scatter-add.  Ids get no gradient.

    With ``mask_zero=True`` the layer also emits the mask ``ids != 0`` for the pooling layer; the
    padding row still exists and is still trained by whatever gradient reaches it (zero here,
    since the masked average gives padding positions zero weight).
    """

    def __init__(self, input_dim: int, output_dim: int, mask_zero: bool = False, name: str | None = None):
        super().__init__(name)
        message = (f"Embedding needs positive integer input_dim and output_dim, got "
                   f"input_dim={input_dim!r}, output_dim={output_dim!r}")
        self.input_dim = positive_int(input_dim, message)
        self.output_dim = positive_int(output_dim, message)
        self.mask_zero = bool(mask_zero)

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
        """dout (B, L, D) -> None; fills grads['embeddings'], (B*L) slices of a (V, D) table."""
        ids = self.cache["ids"]
        self.grads["embeddings"] = IndexedSlices(values=dout.reshape(-1, self.output_dim),
                                                 indices=ids.reshape(-1),
                                                 dense_shape=(self.input_dim, self.output_dim))
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

        forward:  ``out[b] = (1 / L) * sum_i x[b, i]``          x (B, L, D) -> out (B, D)
        backward: ``dx[b, i] = dout[b] / L``

    With the embedding's mask ``mask[b, i] = (ids[b, i] != 0)`` and ``n[b] = sum_i mask[b, i]``:

        forward:  ``out[b] = (1 / n[b]) * sum_i mask[b, i] * x[b, i]``
        backward: ``dx[b, i] = mask[b, i] * dout[b] / n[b]``

    A masked row with no token at all has no average (Keras returns NaN): it raises here.

    The sum over i is accumulated in float64 and rounded once to the input's dtype: a float32
    running sum over thousands of positions (NumPy's strided reduction is sequential) would
    lose about L * 2**-24 of the result, several times more than TensorFlow's tree reduction.
    """

    def forward(self, x, mask=None):
        """x (B, L, D), mask (B, L) bool or None -> (B, D)."""
        self.remember(x.shape[1], mask, x.dtype)
        if mask is None:
            return (x.sum(axis=1, dtype=np.float64) / x.shape[1]).astype(x.dtype)
        total = np.einsum("bt,btd->bd", self.cache["mask"], x, dtype=np.float64)
        return (total / self.cache["counts"]).astype(x.dtype)

    def remember(self, seq_len: int, mask: np.ndarray | None, dtype: np.dtype) -> None:
        """Keep in ``cache`` what ``backward`` needs: L, and the mask (B, L) and counts n (B, 1)
        in ``dtype`` (refusing a masked row with no token)."""
        if mask is None:
            self.cache = {"seq_len": seq_len}
            return
        counts = mask.sum(axis=1)
        check_no_empty_rows(counts)
        self.cache = {"seq_len": seq_len, "mask": mask.astype(dtype),
                      "counts": counts.astype(dtype)[:, None]}

    def backward(self, dout):
        """dout (B, D) -> dx (B, L, D)."""
        seq_len, mask_f = self.cache["seq_len"], self.cache.get("mask")
        if mask_f is None:
            return np.broadcast_to((dout / seq_len)[:, None, :], (dout.shape[0], seq_len, dout.shape[1]))
        return mask_f[:, :, None] * (dout / self.cache["counts"])[:, None, :]

    def compute_mask(self, inputs, mask):
        return None

    def output_shape(self, input_shape):
        """(B, L, D) -> (B, D); ValueError for another rank."""
        _expect_rank(self, input_shape, 3)
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
        units = positive_int(units, f"Dense needs a positive integer number of units, got {units!r}")
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
        """(B, in) -> (B, units); ValueError for another rank."""
        _expect_rank(self, input_shape, 2)
        return (*input_shape[:-1], self.units)


class PooledEmbedding(Layer):
    """``Embedding`` then ``GlobalAveragePooling1D`` as one step, without the (B, L, D) array.

    Wraps the two layers it is made of: it shares the embedding's ``params`` and ``grads``
    dicts, and its forward fills both layers' caches as their own forwards would, so either
    layer's ``backward`` still works after it.  ``Sequential`` builds one from each adjacent
    Embedding -> GlobalAveragePooling1D pair (the tutorial's first two layers) and runs it in
    their place; ``model.layers`` keeps the two Keras layers.

    Notes
    -----
    Let ``c[b, r]`` be how many positions of review b hold row r (counting only the non-padding
    positions when the embedding masks) and ``n[b] = sum_r c[b, r]`` (= L without a mask).

    Forward:  ``pooled[b] = (1 / n[b]) * sum_i mask[b, i] E[ids[b, i]] = (1 / n[b]) * sum_r c[b, r] E[r]``
              (``mask[b, i] = 1`` everywhere without a mask)
              ids (B, L) int -> pooled (B, D)       (``kernels.pooled_lookup``)

    Backward: pooling sends every counted position of review b the same slice
              ``g[b] = dpooled[b] / n[b]``, so the scatter-add over B*L slices is a sum over
              reviews:
              ``dE[r] = sum_b c[b, r] g[b]``   and   ``S[r] = sum_b c[b, r] g[b]**2``
              (S, the sum of the squared slices, is Keras 3's second-moment input).
              ``grads['embeddings']`` is a ``PooledSlices`` holding ids, g and the counts
              (``kernels.pooled_row_sums`` forms dE and S on the U rows the batch touches).
              Ids get no gradient.  docs/gradients.md derives both lines.
    """

    def __init__(self, embedding: Embedding, pooling: GlobalAveragePooling1D):
        super().__init__(f"{embedding.name}+{pooling.name}")
        self.embedding, self.pooling = embedding, pooling
        self.params, self.grads = embedding.params, embedding.grads        # the same dicts
        self.dtype, self.built = embedding.dtype, embedding.built

    def forward(self, ids, mask=None):
        """ids (B, L) ints in [0, V) -> pooled (B, D)."""
        ids = check_token_ids(ids, self.embedding.input_dim)
        token_mask = self.embedding.compute_mask(ids, None)
        pooled, memo = kernels.pooled_lookup(ids, self.params["embeddings"], token_mask)
        self.cache = {"ids": ids, "mask": token_mask, "memo": memo}
        self.embedding.cache = {"ids": ids}
        self.pooling.remember(ids.shape[1], token_mask, pooled.dtype)
        return pooled

    def backward(self, dout):
        """dpooled (B, D) -> None; fills grads['embeddings'], the PooledSlices of dE and S."""
        self.grads["embeddings"] = PooledSlices(self.cache["ids"], dout, self.cache["mask"],
                                                self.embedding.input_dim, self.cache["memo"])
        return None

    def compute_mask(self, inputs, mask):
        return None

    def output_shape(self, input_shape):
        return self.pooling.output_shape(self.embedding.output_shape(input_shape))


def _expect_rank(layer: Layer, input_shape: tuple, rank: int) -> None:
    if len(input_shape) != rank:
        raise ValueError(f"{type(layer).__name__} takes rank-{rank} input, but the layer before it "
                         f"outputs rank {len(input_shape)}")


def fuse_pooled_embeddings(layers: list[Layer]) -> list[Layer]:
    """The layers to run, each adjacent Embedding -> GlobalAveragePooling1D pair replaced by
    one ``PooledEmbedding`` (the same arithmetic; see its Notes)."""
    steps: list[Layer] = []
    for layer in layers:
        if isinstance(layer, GlobalAveragePooling1D) and steps and type(steps[-1]) is Embedding:
            steps[-1] = PooledEmbedding(steps[-1], layer)
        else:
            steps.append(layer)
    return steps


def positive_int(value, message: str) -> int:
    """``value`` as an int >= 1, or ``message`` as a TypeError (not a number: None, a string, a
    bool) or ValueError (NaN, inf, a fraction, < 1), not int()'s own words."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(message)
    if not np.isfinite(value) or int(value) != value or value < 1:
        raise ValueError(message)
    return int(value)


def _snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper() and not name[i - 1].isdigit():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Dropout(Layer):
    """Keras's ``Dropout(rate, seed=None)``: inverted dropout while training, identity otherwise.

    Notes
    -----
    Training (``self.training`` True; ``Sequential`` sets it for a training step only):
        keep[b, ...] ~ Bernoulli(1 - rate), drawn afresh each training forward: draw n comes
        from ``default_rng((root, n))``, a pure function of the layer's seed and n, so a resumed
        run draws what an uninterrupted one would (checkpoints save n: ``state()``);
        ``out = x * (1 / (1 - rate)) * keep``   (TensorFlow's order: scale, then mask)
        backward:    ``dx = dout * (1 / (1 - rate)) * keep``
    so E[out] = x and nothing needs rescaling at inference, where ``out = x``, ``dx = dout``.

    ``fixed_keep``: a boolean array to use instead of a fresh draw (tests compare with Keras
    under the same mask).  ``seed``: the generator's seed; None takes one from the model's.
    """

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None):
        super().__init__(name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 <= rate < 1:
            raise ValueError(f"Dropout needs a rate in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.training = False
        self.fixed_keep: np.ndarray | None = None
        self.root = seed
        self.draws = 0                               # training forwards so far

    def build(self, input_width, rng, dtype):
        super().build(input_width, rng, dtype)
        if self.seed is None:
            self.root = int(rng.integers(2 ** 63))
        return input_width

    def _draw_keep(self, shape: tuple) -> np.ndarray:
        keep = np.random.default_rng((self.root, self.draws)).random(shape) >= self.rate
        self.draws += 1
        return keep

    def state(self) -> dict:
        return {"draws": self.draws}

    def load_state(self, state: dict) -> None:
        draws = state.get("draws")
        if set(state) != {"draws"} or not is_integer(draws) or draws < 0:
            raise ValueError(f"layer {self.name}: a Dropout state is {{'draws': an integer >= 0}}, got {state!r}")
        self.draws = int(draws)

    def forward(self, x, mask=None):
        """x (B, ...) -> same shape."""
        if not self.training or self.rate == 0:
            self.cache = {"scaled_keep": None}
            return x
        keep = self.fixed_keep if self.fixed_keep is not None else self._draw_keep(x.shape)
        scale = x.dtype.type(1 / (1 - self.rate))
        self.cache = {"scaled_keep": (keep, scale)}
        return x * scale * keep

    def backward(self, dout):
        """dout -> dx, same shape."""
        if self.cache["scaled_keep"] is None:
            return dout
        keep, scale = self.cache["scaled_keep"]
        return dout * scale * keep

    def output_shape(self, input_shape):
        return tuple(input_shape)
