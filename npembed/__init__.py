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
           "losses", "metrics", "optimizers", "initializers", "gradcheck", "tutorial_model",
           "models"]



def __getattr__(name: str):
    """``npembed.tutorial_model`` and ``npembed.models`` on first use: the model modules
    (npembed/models/) prepare data, so importing them loads the data code, which the model and
    its kernels alone do not need."""
    if name == "tutorial_model":
        from npembed.models.tutorial import tutorial_model
        return tutorial_model
    if name == "models":
        import npembed.models
        return npembed.models
    raise AttributeError(f"module 'npembed' has no attribute {name!r}")
