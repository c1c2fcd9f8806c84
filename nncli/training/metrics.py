"""The metrics a run can compute, which way each improves, and the checks of the names a config gives.

A config lists what to compute at each evaluation (``metrics:``, top level, beside ``loss:``); the
loss is always computed. Logged names are ``<split>_<metric>``: ``val_f1_macro`` in metrics.jsonl's
eval rows, ``train_loss``, and ``f1_macro`` inside summary.json's ``test`` group.

    classifiers (cross_entropy, logistic)
      acc (accuracy)                       fraction correct; the default for classifiers
      top<k>, e.g. top5                    true class among the k highest scores (cross_entropy, k < C)
      precision, recall, f1                class 1 of a two-class model (scikit-learn's average="binary")
      precision_macro, ..._micro, ..._weighted, and the same for recall and f1
      roc_auc                              binary AUC for two classes, one-vs-rest macro for more
      confusion_matrix (confusion)         counts, rows true class, columns predicted; not a scalar
    regression (squared, mse)
      mae, mse, rmse, r2                   mse is PyTorch's MSELoss whatever the training loss
    any loss
      loss                                 always computed; listing it changes nothing

The implementations live in ``nncli.training.metric_fns``; ``nncli.training.evaluation`` computes them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from nncli.core.errors import ConfigError, did_you_mean

CLASSIFIER = frozenset({"class", "binary"})
REGRESSION = frozenset({"real"})
ANY = CLASSIFIER | REGRESSION


@dataclass(frozen=True)
class MetricSpec:
    """What the trainer, the runs table and the checks know about one metric."""

    name: str
    higher_is_better: bool
    fits: frozenset[str]  # the loss target kinds it applies to (``Loss.target_kind``)
    scalar: bool = True  # False: a matrix (not a best_metric, not a curve)
    two_classes: bool = False  # only for a two-class model (its positive class is class 1)


def _specs() -> dict[str, MetricSpec]:
    specs = [
        MetricSpec("loss", False, ANY),
        MetricSpec("acc", True, CLASSIFIER),
        MetricSpec("roc_auc", True, CLASSIFIER),
        MetricSpec("confusion_matrix", False, CLASSIFIER, scalar=False),
        *(MetricSpec(k, True, CLASSIFIER, two_classes=True) for k in ("precision", "recall", "f1")),
        *(
            MetricSpec(f"{k}_{a}", True, CLASSIFIER)
            for k in ("precision", "recall", "f1")
            for a in ("macro", "micro", "weighted")
        ),
        *(MetricSpec(k, False, REGRESSION) for k in ("mae", "mse", "rmse")),
        MetricSpec("r2", True, REGRESSION),
    ]
    return {s.name: s for s in specs}


#: every metric with a fixed name (top-k metrics are ``top<k>`` for any k ≥ 1)
SPECS = _specs()
ALIASES = {"accuracy": "acc", "confusion": "confusion_matrix", "auc": "roc_auc", "r_squared": "r2"}
_TOP_K = re.compile(r"^top_?(\d+)$")
SPLITS = ("train", "val", "test")

#: the metrics a run logs by default, which ``train.best_metric`` and early stopping may name
METRICS = ("val_loss", "val_acc", "train_loss")

#: the field of an eval row that holds a metric, where the names differ: in eval rows the training loss
#: is the mean since the previous evaluation, a different window from the ``log_every`` mean of the
#: train rows' ``train_loss``, so it has its own name (a curve of one field never mixes the two windows)
EVAL_FIELDS = {"train_loss": "train_loss_since_eval"}


def top_k(name: str) -> int | None:
    """k of a top-k metric name (``top5`` → 5), else None."""
    m = _TOP_K.match(name)
    return int(m.group(1)) if m else None


def canonical(name: str) -> str | None:
    """The logged name of a metric as a config may write it (``accuracy`` → ``acc``, ``top_5`` →
    ``top5``), or None for an unknown name."""
    name = ALIASES.get(name, name)
    k = top_k(name)
    if k is not None:
        return f"top{k}" if k >= 1 else None
    return name if name in SPECS else None


def spec(name: str) -> MetricSpec | None:
    """The spec of metric ``name`` (without a split prefix), or None for an unknown name."""
    name = canonical(name) or ""
    if top_k(name) is not None:
        return MetricSpec(name, True, frozenset({"class"}))
    return SPECS.get(name)


def known_names() -> list[str]:
    """Names to suggest in messages: every fixed name and one top-k example."""
    return [*SPECS, "top5"]


def eval_value(record: dict, metric: str):
    """The value of ``metric`` (e.g. ``val_f1_macro``, ``train_loss``) in an eval row."""
    return record.get(EVAL_FIELDS.get(metric, metric))


def kind(metric: str) -> str:
    """``val_f1_macro`` → ``f1_macro``: the metric without its split prefix."""
    head, _, rest = metric.partition("_")
    return rest if head in SPLITS and rest else metric


def higher_is_better(metric: str) -> bool:
    """Accuracies, F1, AUC and R² go up; losses and errors (and anything unknown) go down."""
    s = spec(kind(metric))
    return s.higher_is_better if s is not None else False


def better(metric: str, new: float | None, old: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``new`` improves on ``old`` by more than ``min_delta`` (a missing or non-finite ``new`` never does)."""
    if new is None or not math.isfinite(new):
        return False
    if old is None:
        return True
    return new > old + min_delta if higher_is_better(metric) else new < old - min_delta


@dataclass(frozen=True)
class Fit:
    """What a metric must fit: the loss's target kind (``Loss.target_kind``), its name for messages,
    and the model's number of classes (None for regression)."""

    target_kind: str
    loss_name: str
    classes: int | None = None

    @classmethod
    def of(cls, loss, output_shape) -> Fit:
        """The fit of a chain's loss and per-example output shape."""
        from nncli.core.registry import losses

        kind_ = getattr(loss, "target_kind", "real")
        name = losses.canonical_name(type(loss))
        classes = 2 if kind_ == "binary" else int(output_shape[0]) if kind_ == "class" else None
        return cls(kind_, name, classes)


def check_fits(name: str, where: str, fit: Fit) -> MetricSpec:
    """The spec of metric ``name`` (canonical), or a ConfigError at ``where`` when it does not fit."""
    s = spec(name)
    if s is None:
        raise ConfigError(
            f"unknown metric '{name}'{did_you_mean(name, known_names())}; choose from "
            f"{', '.join(known_names()[:-1])} or top<k> (e.g. top5)",
            field=where,
        )
    if fit.target_kind not in s.fits:
        what = "a classifier's" if s.fits <= CLASSIFIER else "a regression"
        losses = "cross_entropy or logistic" if s.fits <= CLASSIFIER else "squared or mse"
        if top_k(s.name) is not None:
            what, losses = "a multi-class", "cross_entropy"
        raise ConfigError(
            f"{name} is {what} metric: it needs a {losses} loss, and this model's loss is {fit.loss_name}",
            field=where,
        )
    k = top_k(s.name)
    if k is not None and fit.classes is not None and k >= fit.classes:
        raise ConfigError(
            f"{name} needs more than {k} classes (top-{k} of {fit.classes} classes is always 1); "
            f"use a smaller k",
            field=where,
        )
    if s.two_classes and fit.classes != 2:
        raise ConfigError(
            f"{name} is the {s.name} of class 1 of a two-class model, and this one has {fit.classes} "
            f"classes; choose {s.name}_macro, {s.name}_micro or {s.name}_weighted",
            field=where,
        )
    return s


def resolve(names: list[str] | None, where: str, fit: Fit) -> tuple[str, ...]:
    """The canonical metrics to compute besides the loss: ``names`` as a config lists them (checked,
    duplicates dropped), or the default — accuracy for a classifier, nothing more for regression."""
    if names is None:
        return ("acc",) if fit.target_kind in CLASSIFIER else ()
    out: dict[str, None] = {}
    for i, name in enumerate(names):
        s = check_fits(name, f"{where}[{i}]", fit)
        if s.name != "loss":
            out.setdefault(s.name)
    return tuple(out)


def check_metric(name: str, where: str, has_val: bool, fit: Fit) -> str:
    """A ConfigError at ``where`` unless ``name`` (``train_loss`` or ``val_<scalar metric>``) is a metric
    this run can produce at each evaluation; returns the metric to compute (without ``val_``)."""
    choices = ["train_loss", *(f"val_{n}" for n in known_names() if n != "confusion_matrix")]
    split, _, metric = name.partition("_")
    s = spec(metric) if split in ("val", "train") else None
    if s is None or (split == "train" and s.name != "loss"):
        hint = did_you_mean(name, choices)
        if split == "test":
            hint = " (test metrics are computed once, at the end; name a val_ metric or train_loss)"
        raise ConfigError(
            f"unknown metric '{name}'{hint}; choose train_loss or val_<metric> "
            f"(val_loss, val_acc, val_f1_macro, val_roc_auc, val_r2, ...)",
            field=where,
        )
    if s.name != metric:  # an alias: the eval rows hold the canonical name
        raise ConfigError(f"'{name}' is logged as '{split}_{s.name}'; write that", field=where)
    check_fits(metric, where, fit)
    if not s.scalar:
        raise ConfigError(f"{name} is a matrix, not a number; choose a scalar metric", field=where)
    if split == "val" and not has_val:
        raise ConfigError(
            f"{name} needs a validation split (data.val_split > 0); use train_loss instead", field=where
        )
    return s.name


def run_metrics(cfg, fit: Fit, has_val: bool) -> tuple[str, ...]:
    """What a run computes at each evaluation (besides the loss): ``cfg.metrics`` (default: accuracy
    for classifiers), plus the metrics ``train.best_metric`` and early stopping name. Every name is
    checked against the loss (a ConfigError placed at its field otherwise)."""
    wanted = list(resolve(getattr(cfg, "metrics", None), "metrics", fit))
    t = cfg.train
    named = [(t.best_metric, "train.best_metric")]
    if t.early_stopping is not None:
        named.append((t.early_stopping.metric, "train.early_stopping.metric"))
    for name, where in named:
        metric = check_metric(name, where, has_val, fit)
        if name.startswith("val_") and metric != "loss" and metric not in wanted:
            wanted.append(metric)
    return tuple(wanted)
