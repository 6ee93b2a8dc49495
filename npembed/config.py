"""A training run's options (the tutorial's settings by default), checked before anything runs.

Every option is checked here, before a file is written or the data is loaded: a rejected option
must leave nothing behind.  ``TrainConfig.from_json`` reads a ``config.json`` back with the same
checks, so that a damaged one is reported as such.
"""
from __future__ import annotations

import dataclasses
import math
import os

import npembed
from npembed.errors import UsageError

MAX_SEED = 2 ** 63 - 2           # the validation stream uses seed + 1
LONGEST_REVIEW = 4000            # subwords; IMDB's longest is 3,944 (a bound for the memory estimate)


# The per-epoch training loss the tutorial printed (TF 2.1, tf.keras, 2,500 steps of
# padded_batch(10) per epoch): tensorflow/docs, site/en/tutorials/text/word_embeddings.ipynb as
# published with TF 2.1.  `make train` (keras2 Adam) is held within 0.03 of it in every epoch.
TUTORIAL_LOSS = (0.5060, 0.2816, 0.2261, 0.1937, 0.1718, 0.1552, 0.1411, 0.1291, 0.1186, 0.1077)


@dataclasses.dataclass
class TrainConfig:
    """The tutorial's settings by default."""

    epochs: int = 10
    batch_size: int = 10
    embedding_dim: int = 16
    hidden_units: int = 16
    mask: bool = False
    learning_rate: float = 0.001
    seed: int = 0
    validation_steps: int | None = 20
    shuffle_buffer: int = 1000
    early_stopping: int = 0          # patience in epochs on val_loss; 0 = off
    steps_per_epoch: int | None = None
    adam_variant: str = "keras2"     # the tutorial's tf.keras Adam; see optimizers.py

    def __post_init__(self):
        # runs started before the variants were named by their Keras say "keras" or "textbook"
        self.adam_variant = npembed.optimizers.Adam.ALIASES.get(self.adam_variant, self.adam_variant)

    def validate(self, vocab_size: int = 8185) -> None:
        """Raise UsageError, naming the option as the CLI spells it, for any bad value."""
        for name, low in [("epochs", 1), ("batch_size", 1), ("embedding_dim", 1), ("hidden_units", 0),
                          ("shuffle_buffer", 0), ("early_stopping", 0), ("seed", 0)]:
            _check_int(name, getattr(self, name), low, MAX_SEED if name == "seed" else None)
        for name in ("validation_steps", "steps_per_epoch"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and rate > 0):
            raise UsageError(f"--learning-rate must be a finite number > 0, got {rate!r}")
        if not isinstance(self.mask, bool):
            raise UsageError(f"--mask must be true or false, got {self.mask!r}")
        variants = npembed.optimizers.Adam.VARIANTS
        if self.adam_variant not in variants:
            raise UsageError(f"--adam must be one of {', '.join(variants)}, got {self.adam_variant!r}")
        self._check_memory(vocab_size)

    def _check_memory(self, vocab_size: int) -> None:
        """Refuse a model or batch that cannot fit in this machine's memory (it would be killed
        or swap for minutes before failing)."""
        dim, units = self.embedding_dim, self.hidden_units
        table = 4 * vocab_size * dim * 4                 # float32 weights, gradient, Adam's m and v
        dense = 4 * 4 * (dim * units + units * 1)
        batch = self.batch_size * LONGEST_REVIEW * (8 + 4 * dim)    # ids and one float32 pass
        need, have = table + dense + batch, _physical_memory()
        if have and need > have:
            raise UsageError(f"--embedding-dim {dim}, --hidden-units {units} and --batch-size "
                             f"{self.batch_size} need about {need / 2**30:.1f} GiB, more than this "
                             f"machine's {have / 2**30:.1f} GiB: choose smaller values")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, document) -> "TrainConfig":
        """A TrainConfig from a parsed config.json, or UsageError saying what is wrong."""
        if not isinstance(document, dict):
            raise UsageError(f"it holds a {type(document).__name__}, not an object of options")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(document) - names)
        if unknown:
            raise UsageError(f"unknown options {unknown}")
        config = cls(**document)
        config.validate()
        return config


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise UsageError(f"--{name.replace('_', '-')} must be an integer {bound}, got {value!r}")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def build_model(config: TrainConfig, vocab_size: int) -> npembed.Sequential:
    model = npembed.tutorial_model(vocab_size=vocab_size, embedding_dim=config.embedding_dim,
                                   hidden_units=config.hidden_units, mask_zero=config.mask, seed=config.seed)
    model.compile(optimizer=npembed.optimizers.Adam(learning_rate=config.learning_rate, variant=config.adam_variant),
                  loss=npembed.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return model
