"""npembed: the TensorFlow word-embeddings tutorial model, written by hand in NumPy.

    Embedding(8185, 16) -> GlobalAveragePooling1D -> Dense(16, relu) -> Dense(1)

trained with sigmoid cross-entropy on logits and Keras-exact Adam.  ``import npembed`` needs only
NumPy; TensorFlow, tensorflow-datasets and matplotlib are imported lazily where they are used.
"""
from npembed import gradcheck, initializers, layers, losses, metrics, optimizers
from npembed.loop import Callback, History
from npembed.errors import NonFiniteLossError
from npembed.model import Sequential
from npembed.sparse import IndexedSlices

__version__ = "0.1.0"

__all__ = ["Sequential", "Callback", "History", "NonFiniteLossError", "IndexedSlices", "layers",
           "losses", "metrics", "optimizers", "initializers", "gradcheck", "tutorial_model"]


def tutorial_model(vocab_size: int = 8185, embedding_dim: int = 16, hidden_units: int = 16,
                   mask_zero: bool = False, seed: int | None = None, dtype="float32") -> Sequential:
    """The tutorial's model; ``hidden_units=0`` drops the Dense(16, relu) layer."""
    stack = [layers.Embedding(vocab_size, embedding_dim, mask_zero=mask_zero),
             layers.GlobalAveragePooling1D()]
    if hidden_units:
        stack.append(layers.Dense(hidden_units, activation="relu"))
    stack.append(layers.Dense(1))
    return Sequential(stack, seed=seed, dtype=dtype)
