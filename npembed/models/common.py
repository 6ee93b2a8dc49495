"""What several model modules share: the optimizer a run's options name."""
from __future__ import annotations

from npembed import optimizers

OPTIMIZERS = ("adam", "sgd", "rowwise-adagrad")


def make_optimizer(config, steps_per_epoch: int | None = None):
    """The optimizer ``config.optimizer`` names, at ``config.learning_rate``.

    ``sgd``: its rate decays linearly to 0 over ``epochs * steps_per_epoch`` steps (fastText's
    schedule); without steps_per_epoch it stays constant.  ``rowwise-adagrad`` keeps its rate
    (its accumulators already shrink the steps).  ``adam``: ``config.adam_variant``."""
    if config.optimizer == "sgd":
        decay = config.epochs * steps_per_epoch if steps_per_epoch else None
        return optimizers.SGD(learning_rate=config.learning_rate, decay_steps=decay)
    if config.optimizer == "rowwise-adagrad":
        return optimizers.RowwiseAdagrad(learning_rate=config.learning_rate)
    return optimizers.Adam(learning_rate=config.learning_rate, variant=config.adam_variant)
