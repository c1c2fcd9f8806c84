"""The config schema: what a YAML file may say, with defaults, ranges and unknown keys refused.

Layer entries stay plain dicts here (``type`` plus that module's hyper-parameters): each module type
validates its own keys with its ``Config`` when the builder creates it, so a newly registered module
needs no change in this file.

    name: mnist1d_cnn            # run folder prefix
    seed: 0
    dtype: float32               # training dtype; gradcheck always uses float64
    model:
      input_shape: [1, 40]       # per example, channels first
      layers:
        - {type: Conv1D, out: 25, kernel: 5, stride: 2, padding: 1}
        - {type: ReLU}
        - {type: Flatten}
        - {type: MM, out: 10}
    loss: cross_entropy          # or {type: cross_entropy}
    metrics: [acc, f1_macro]     # besides the loss, at each evaluation and on test (training/metrics.py)
    data: {...}                  # DataConfig
    optimizer: {...}             # OptimizerConfig
    schedule: {...}              # ScheduleConfig
    train: {...}                 # TrainConfig
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nncli.core.errors import did_you_mean
from nncli.core.registry import optimizers, schedules

# `X | None` (types.UnionType) and `Optional[X]` (typing.Union) are the same to the schema walk
_UNIONS = (Union, types.UnionType)


def registered(registry, value: Any) -> str:
    """The canonical name of ``value`` in ``registry`` (case-insensitive: ``Adam`` → ``adam``), else a
    ValueError worded as for a fixed list of choices: ``expected one of 'sgd' or 'adam', got …``."""
    name = registry.canonical(value)
    if name is not None:
        return name
    from nncli.config.messages import describe  # messages imports this module

    names = list(registry.canonical_classes())
    quoted = [repr(n) for n in names]
    choices = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    hint = did_you_mean(value, names) if isinstance(value, str) else ""
    raise ValueError(f"expected one of {choices}, got {describe(value)}{hint}")


class Strict(BaseModel):
    """Unknown keys are errors; YAML strings are never silently turned into numbers; every number
    must be finite (``.nan``, ``.inf`` are refused where a number is meant)."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_assignment=True, allow_inf_nan=False)


class ModelConfig(Strict):
    input_shape: list[int] = Field(min_length=1, description="per-example input shape, channels first")
    layers: list[dict[str, Any]] = Field(min_length=1, description="the modules, in order")

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, v):
        if any(s <= 0 for s in v):
            raise ValueError(f"every size must be a positive integer, got {v}")
        return v


class LossConfig(Strict):
    type: str = "cross_entropy"
    model_config = ConfigDict(extra="allow")  # loss hyper-parameters are checked by the loss


#: cells read as missing values in tables (data.missing decides what happens to them)
MISSING_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "?")


class DataConfig(Strict):
    # a built-in name (mnist1d, digits, spirals, regression1d) or a .npz / .csv path
    source: str = Field(description="built-in dataset name or a path to .npz / .csv")
    # the data file's SHA-256, recorded by every run in its saved config; training refuses a changed file
    sha256: str | None = Field(None, description="the data file's SHA-256 (64 hex digits)")
    # .npz: array names; .csv: target column name or index
    x_key: str = "x"
    y_key: str = "y"
    target_column: str | int = -1
    csv_header: bool = True
    # held-out parts: fractions of the training data (a dataset's own test split is used when it has one)
    val_split: float = Field(0.1, ge=0.0, lt=1.0)
    test_split: float = Field(0.0, ge=0.0, lt=1.0, description="used only when the data has no test split")
    standardize: bool = True  # statistics from the training part only, saved in the run
    shuffle: bool = True  # reshuffled every epoch, seeded
    batch_size: int = Field(64, gt=0)
    # synthetic sets
    n_samples: int = Field(1000, gt=0)
    noise: float = Field(0.1, ge=0.0)
    classes: int = Field(3, ge=2)
    # tables (.csv, .parquet): which columns, labels, missing cells, categories (training/tables/)
    features: list[str | int] | None = Field(None, description="input columns, by name or index")
    drop: list[str | int] = Field(default_factory=list, description="columns left out")
    categorical: list[str | int] = Field(default_factory=list, description="columns one-hot encoded")
    unknown_category: Literal["error", "ignore"] = "error"  # ignore: encoded as all zeros
    label_map: dict[str | int | float, int] | list[str | int | float] | None = None
    missing: Literal["error", "drop", "mean", "median"] = "error"
    missing_values: list[str] = Field(default_factory=lambda: list(MISSING_VALUES))
    class_weights: Literal["balanced"] | list[float] | None = None  # cross_entropy only
    engine: Literal["auto", "pyarrow", "pandas", "python"] = "auto"  # the CSV reader

    @field_validator("features", "drop", "categorical", "label_map", mode="before")
    @classmethod
    def _no_booleans(cls, v):
        # YAML 1.1 reads yes/no/on/off as booleans: a column or label named so must be quoted
        items = list(v) if isinstance(v, (list, dict)) else []
        for item in items:
            if isinstance(item, bool):
                word = str(item).lower()
                raise ValueError(f"got the boolean {word} (YAML reads yes/no/on/off so); quote the name")
        return v

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, v):
        if isinstance(v, list) and (not v or any(w < 0 for w in v) or not any(w > 0 for w in v)):
            raise ValueError(f"class weights must be ≥ 0 and not all zero, got {v}")
        return v

    @model_validator(mode="after")
    def _features_or_drop(self):
        if self.features is not None and self.drop:
            raise ValueError("give either features (the columns to use) or drop (the columns to leave out)")
        return self

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, v):
        if v is not None and not (len(v) == 64 and all(c in "0123456789abcdef" for c in v)):
            raise ValueError(f"expected a SHA-256 as 64 lowercase hex digits, got {v[:70]!r}")
        return v


class OptimizerConfig(Strict):
    type: str = Field("sgd", description="a registered optimiser: sgd, adam")
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)

    @field_validator("type", mode="before")
    @classmethod
    def _registered(cls, v):
        return registered(optimizers, v)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov needs momentum > 0")
        return self

    @field_validator("betas")
    @classmethod
    def _betas(cls, v):
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"betas must lie in [0, 1), got {list(v)}")
        return v


class ScheduleConfig(Strict):
    type: str = Field("constant", description="a registered schedule: constant, step, cosine")
    warmup_steps: int = Field(
        0, ge=0, description="linear warm-up: lr·(t+1)/warmup_steps for t < warmup_steps"
    )
    step_size: int = Field(1000, gt=0, description="step: multiply lr by gamma every step_size steps")
    gamma: float = Field(0.1, gt=0.0)
    min_lr: float = Field(0.0, ge=0.0, description="cosine: final learning rate")

    @field_validator("type", mode="before")
    @classmethod
    def _registered(cls, v):
        return registered(schedules, v)


class EarlyStopping(Strict):
    metric: str = "val_loss"
    patience: int = Field(5, gt=0, description="evaluations without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0)


class WatchConfig(Strict):
    every: int = Field(50, gt=0, description="steps between records in watch.jsonl (the first step too)")


class TrainConfig(Strict):
    epochs: int | None = Field(10, gt=0)
    steps: int | None = Field(None, gt=0, description="a step budget; overrides epochs when set")
    log_every: int = Field(50, gt=0, description="steps between train-loss lines in metrics.jsonl")
    eval_every: int | None = Field(
        None, gt=0, description="steps between evaluations; default once per epoch"
    )
    checkpoint_every: int | None = Field(
        None, gt=0, description="steps between checkpoints; default each evaluation"
    )
    clip_grad_norm: float | None = Field(None, gt=0.0)
    best_metric: str = "val_loss"  # which metric picks the `best` checkpoint
    early_stopping: EarlyStopping | None = None
    on_nonfinite: Literal["stop", "skip", "ignore"] = "stop"
    watch: WatchConfig | None = None  # per-module norms, gradients and update ratios → watch.jsonl


class Config(Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    dtype: Literal["float32", "float64"] = "float32"
    model: ModelConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    # names are checked against the loss by the trainer (nncli.training.metrics); None: accuracy for
    # classifiers, only the loss for regression
    metrics: list[str] | None = None
    data: DataConfig | None = None
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_shorthand(cls, v):
        return {"type": v} if isinstance(v, str) else v


# -- walking the schema along a dotted path (config overrides, did-you-mean on unknown keys) ------
# A node says what sits at a path: ("model", cls) a section, ("layers",) a list of layer entries,
# ("layer",) one layer entry (its keys come from the layer type's own Config), ("list",) a list of
# values, ("any",) free-form data, ("leaf",) a single value.


def field_keys(model_cls) -> dict[str, str]:
    """Every key a pydantic model accepts (field names and validation aliases) → its field name."""
    keys: dict[str, str] = {}
    for name, f in model_cls.model_fields.items():
        keys[name] = name
        alias = f.validation_alias
        for a in getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else []):
            if isinstance(a, str):
                keys[a] = name
        if isinstance(f.alias, str):
            keys[f.alias] = name
    return keys


def section_keys(node: tuple, cur: Any) -> dict[str, str] | None:
    """Keys allowed at ``node`` holding data ``cur``: a dict (empty = any key), or None (no keys)."""
    from nncli.core.errors import ConfigError
    from nncli.core.registry import losses, modules

    kind = node[0]
    if kind == "model":
        keys = field_keys(node[1])
        if node[1] is LossConfig:
            name = cur.get("type", "cross_entropy") if isinstance(cur, dict) else cur
            try:
                keys.update(field_keys(losses.lookup(name).Config))
            except ConfigError:
                pass
        return keys
    if kind == "layer":
        try:
            entry = modules.lookup(cur.get("type")) if isinstance(cur, dict) else None
        except ConfigError:
            entry = None
        return {"type": "type", **field_keys(entry.Config)} if entry is not None else {}
    if kind == "any":
        return None if isinstance(cur, list) else {}
    return None


def next_node(node: tuple, key: Any, keys: dict[str, str] | None) -> tuple:
    """The node one step below ``node`` along ``key``."""

    kind = node[0]
    if kind == "layers":
        return ("layer",)
    if kind == "layer":
        return ("layers",) if key == "layers" else ("any",)
    if kind != "model":
        return ("any",)
    cls = node[1]
    name = (keys or {}).get(key, key)
    if name not in cls.model_fields:
        return ("any",)
    ann = cls.model_fields[name].annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in _UNIONS and len(args) == 1:
        ann = args[0]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ("model", ann)
    if cls is ModelConfig and name == "layers":
        return ("layers",)
    origin = typing.get_origin(ann)
    if origin in (list, tuple):
        return ("list",)
    if origin is dict or ann is Any or origin in _UNIONS:
        return ("any",)
    return ("leaf",)


def node_at(model_cls, data: Any, parts: list) -> tuple[tuple, Any]:
    """Walk ``parts`` from ``("model", model_cls)`` over ``data``: (node, the data found there)."""
    node, cur = ("model", model_cls), data
    for part in parts:
        node = next_node(node, part, section_keys(node, cur))
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            cur = None
    return node, cur
