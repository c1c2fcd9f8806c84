"""Which way each metric improves: one table for the trainer, the runs table and sweeps.

A metric's name is ``<split>_<kind>`` (``val_acc``, ``train_loss``, ``test_acc``); its kind decides
the direction. Anything that is not an accuracy is treated as a loss (lower is better).
"""

from __future__ import annotations

import math

from nncli.core.errors import ConfigError, did_you_mean

#: direction of each kind of metric: "max" when higher is better
DIRECTION = {"loss": "min", "acc": "max"}

#: the metrics a run logs at each evaluation, which ``train.best_metric`` and early stopping may name
METRICS = ("val_loss", "val_acc", "train_loss")

#: the field of an eval row that holds a metric, where the names differ: in eval rows the training loss
#: is the mean since the previous evaluation, a different window from the ``log_every`` mean of the
#: train rows' ``train_loss``, so it has its own name (a curve of one field never mixes the two windows)
EVAL_FIELDS = {"train_loss": "train_loss_since_eval"}


def eval_value(record: dict, metric: str):
    """The value of ``metric`` (one of METRICS) in an eval row."""
    return record.get(EVAL_FIELDS.get(metric, metric))


def kind(metric: str) -> str:
    """``val_acc`` → ``acc``: the last word of the name."""
    return metric.rsplit("_", 1)[-1]


def higher_is_better(metric: str) -> bool:
    """Accuracies go up; losses (and anything else) go down."""
    return DIRECTION.get(kind(metric), "min") == "max"


def better(metric: str, new: float | None, old: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``new`` improves on ``old`` by more than ``min_delta`` (a missing or non-finite ``new`` never does)."""
    if new is None or not math.isfinite(new):
        return False
    if old is None:
        return True
    return new > old + min_delta if higher_is_better(metric) else new < old - min_delta


def check_metric(name: str, where: str, has_val: bool, classifier: bool) -> None:
    """ConfigError unless ``name`` is a metric this run will produce."""
    if name not in METRICS:
        raise ConfigError(
            f"unknown metric '{name}'{did_you_mean(name, METRICS)}; choose one of {', '.join(METRICS)}",
            field=where,
        )
    if name.startswith("val_") and not has_val:
        raise ConfigError(
            f"{name} needs a validation split (data.val_split > 0); use train_loss instead", field=where
        )
    if name == "val_acc" and not classifier:
        raise ConfigError("val_acc needs a classification loss (cross_entropy or logistic)", field=where)
