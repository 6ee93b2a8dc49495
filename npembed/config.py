"""A training run's options (the tutorial's settings by default), checked before anything runs.

Every option is checked here, before a file is written or the data is loaded: a rejected option
must leave nothing behind.  The options common to every model are ``TrainConfig``'s fields; a
model's own options (``models/<name>.py``, its ``OPTIONS``) are in ``model_options``, and the
model module checks them and chooses its defaults.  ``TrainConfig.from_json`` reads a
``config.json`` back with the same checks, so that a damaged one is reported as such; a
config.json from before ``--model`` (it holds ``ngrams``) is read as the model it describes.
"""
from __future__ import annotations

import dataclasses
import math
import os

from npembed.checks import check_int_option, is_number
from npembed.errors import RunFolderError, UsageError
from npembed.models import MODELS, model_module, owner_of
from npembed.models.common import OPTIMIZERS
from npembed.optimizers import Adam, check_learning_rate

MAX_SEED = 2 ** 63 - 2           # the validation stream uses seed + 1
LONGEST_REVIEW = 4000            # subwords; IMDB's longest is 3,944 (a bound for the memory estimate)


# The per-epoch training loss the tutorial printed (TF 2.1, tf.keras, 2,500 steps of
# padded_batch(10) per epoch): tensorflow/docs, site/en/tutorials/text/word_embeddings.ipynb as
# published with TF 2.1.  `make train` (keras2 Adam) is held within 0.03 of it in every epoch.
TUTORIAL_LOSS = (0.5060, 0.2816, 0.2261, 0.1937, 0.1718, 0.1552, 0.1411, 0.1291, 0.1186, 0.1077)


@dataclasses.dataclass
class TrainConfig:
    """The tutorial's settings by default; ``model_options`` holds the model's own options."""

    model: str = "tutorial"          # a name in models.MODELS
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
    optimizer: str = "adam"          # or, for --model ngrams, one step per review: "sgd" (fastText's,
                                     # its rate decaying linearly to 0) or "rowwise-adagrad"
    model_options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.model, str) and self.model in MODELS and isinstance(self.model_options, dict):
            self.model_options = {**MODELS[self.model].OPTIONS, **self.model_options}

    @classmethod
    def for_model(cls, model: str = "tutorial", **options) -> "TrainConfig":
        """The configuration of ``model``: its module's defaults for what ``options`` (common and
        its own, by name) leaves out; UsageError for a name that is neither."""
        module = model_module(model)
        unknown = [name for name in options if name not in COMMON and name not in module.OPTIONS]
        if unknown:
            raise UsageError(unknown_options_message(unknown, model))
        values = {**module.defaults(options), **options}
        return cls(model=model, **{name: value for name, value in values.items() if name in COMMON},
                   model_options={name: value for name, value in values.items() if name in module.OPTIONS})

    def flat(self) -> dict:
        """Every option by its name, the model's own beside the common ones."""
        document = dataclasses.asdict(self)
        own = document.pop("model_options")
        return {**document, **own}

    def validate(self, vocab_size: int = 8185) -> None:
        """Raise UsageError, naming the option as the CLI spells it, for any bad value."""
        module = model_module(self.model)
        for name, low in [("epochs", 1), ("batch_size", 1), ("embedding_dim", 1), ("hidden_units", 0),
                          ("shuffle_buffer", 0), ("early_stopping", 0), ("seed", 0)]:
            check_int_option(name, getattr(self, name), low, MAX_SEED if name == "seed" else None)
        for name in ("validation_steps", "steps_per_epoch"):
            if getattr(self, name) is not None:
                check_int_option(name, getattr(self, name), 1)
        rate = self.learning_rate
        if not is_number(rate) or not (math.isfinite(rate) and rate > 0):
            raise UsageError(f"--learning-rate must be a finite number > 0, got {rate!r}")
        try:
            check_learning_rate(rate)
        except ValueError as err:
            raise UsageError(f"--learning-rate: {err}") from None
        if not isinstance(self.mask, bool):
            raise UsageError(f"--mask must be true or false, got {self.mask!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.adam_variant not in Adam.VARIANTS:
            raise UsageError(f"--adam must be one of {', '.join(Adam.VARIANTS)}, got {self.adam_variant!r}")
        unknown = sorted(set(self.model_options) - set(module.OPTIONS)) if isinstance(self.model_options, dict) \
            else [repr(self.model_options)]
        if unknown:
            raise UsageError(unknown_options_message(unknown, self.model))
        module.check(self, vocab_size)
        self._check_memory(module.table_rows(self, vocab_size), getattr(module, "position_bytes", lambda _: 0)(self))

    def _check_memory(self, rows: int, position_bytes: int = 0) -> None:
        """Refuse a model or batch that cannot fit in this machine's memory (it would be killed
        or swap for minutes before failing)."""
        dim, units = self.embedding_dim, self.hidden_units
        table = 4 * rows * dim * 4                 # float32 weights, gradient, Adam's m and v
        dense = 4 * 4 * (dim * units + units * 1)
        batch = self.batch_size * LONGEST_REVIEW * (8 + 4 * dim + position_bytes)  # ids, one pass, the model's own
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
        if "model" not in document and "ngrams" in document:
            document = from_before_models(document)
        if isinstance(document.get("model"), str) and document["model"] not in MODELS:
            raise RunFolderError(f"it is a run of --model {document['model']}, which this npembed does not "
                                 f"have (it has {', '.join(MODELS)})")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(document) - names)
        if unknown:
            raise UsageError(f"unknown options {unknown}")
        config = cls(**document)
        config.validate()
        return config


COMMON = tuple(field.name for field in dataclasses.fields(TrainConfig) if field.name not in ("model", "model_options"))


def unknown_options_message(names, model: str) -> str:
    """Which of ``names`` belong to another model, and which to none."""
    parts = []
    for name in names:
        owner = owner_of(name)
        parts.append(f"--{name.replace('_', '-')} is an option of --model {owner}" if owner
                     else f"{name!r} is not an option of npembed train")
    return "; ".join(parts) + f" (this run's model is {model})"


def from_before_models(document: dict) -> dict:
    """A config.json written before ``--model`` (its model chosen by ``ngrams``: 0 the
    tutorial's, N the n-gram model), as today's options; RunFolderError naming the format for
    one that used what this npembed no longer has (--nb-init, --nb-rates)."""
    document = dict(document)
    dropped = [name for name in ("nb_init", "nb_rates") if document.pop(name, False)]
    if dropped:
        raise RunFolderError(f"it is of the format before --model and was trained with "
                         f"{', '.join('--' + name.replace('_', '-') for name in dropped)}, which this npembed "
                         "no longer has (benchmarks/naive_bayes.py keeps the experiment): it cannot be "
                         "resumed or reloaded here")
    variant = document.get("adam_variant")
    document["adam_variant"] = {"textbook": "keras2", "keras": "keras3"}.get(variant, variant)
    own = {name: document.pop(name) for name in ("ngrams", "buckets", "validation_reviews") if name in document}
    if own.get("ngrams"):
        document.update(model="ngrams", model_options=own)
    else:
        document["model"] = "tutorial"
    return document


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def build_model(config: TrainConfig, vocab_size: int, steps_per_epoch: int | None = None):
    """The compiled model of ``config`` (its model module's ``build``)."""
    return model_module(config.model).build(config, vocab_size, steps_per_epoch)
