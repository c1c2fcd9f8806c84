"""Datasets for training: built-in and user data, seeded splits, standardisation and batching.

    load_dataset(cfg, input_shape=…, loss=…, seed=…)  →  Dataset(train, val, test, info)

Sources: the packaged ``mnist1d`` and ``digits`` (see training/datasets/README.md), the synthetic
``spirals`` and ``regression1d`` (training/synthetic.py), each a loader registered by name in
``core.registry.data_sources``; any other ``data.source`` is a user ``.npz`` / ``.csv`` file
(training/userdata.py). Splits:

- a published test set (mnist1d's, or ``x_test``/``y_test`` in a user .npz) is kept as it is;
  otherwise ``test_split`` of the examples is held out (digits: 0.2 when ``test_split`` is 0);
- ``val_split`` of the examples that are not a published test set is held out for validation;
- for label losses (cross-entropy, logistic) both are stratified: every class keeps its proportion.

What is checked here: empty data, non-numeric dtypes, NaN/Inf, x/y length mismatches, per-example
sizes against the model's ``input_shape``, and fractional labels for label losses. The label *range*
(0 ≤ y < C) is the loss's to judge: pass ``output_shape`` and this module calls
``loss.check_targets`` on every part; without it the caller must.

Randomness: every stream is a ``SeedSequence(seed)`` child with a fixed spawn key per purpose
(generate, split, shuffle + epoch), so a split or an epoch's order is a pure function of the seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nncli.config.memory import check_data_fits
from nncli.config.schema import DataConfig
from nncli.core.errors import ConfigError, DataError, did_you_mean
from nncli.core.registry import data_sources
from nncli.training import synthetic
from nncli.training.datasets import load_packaged
from nncli.training.tables import blocks, fitting
from nncli.training.tables.encode import apply_preprocessing
from nncli.training.tables.labels import encode_labels, label_key, map_labels
from nncli.training.tables.prepared import read_prepared
from nncli.training.tables.table_files import TABLE_KEYS, is_table
from nncli.training.userdata import (
    USER_SUFFIXES,
    _file_exists,
    check_inputs,
    coerce_targets,
    fit_input_shape,
    load_arrays,
    read_user_file,
)

__all__ = [
    "Split",
    "Dataset",
    "load_dataset",
    "apply_standardization",
    "load_arrays",
    "epoch_permutation",
    "batches",
]

#: digits has no published test set; this much of it is held out when test_split is 0
DIGITS_TEST_SPLIT = 0.2
#: features whose training std is below this are divided by 1, not by a tiny number that would
#: blow up the validation and test values of a feature that is constant in training
STD_FLOOR = 1e-8

# spawn keys: (_DATA, purpose[, epoch]) — far from the small keys SeedSequence.spawn() hands out
_DATA, _GENERATE, _SPLIT, _SHUFFLE = 0x6E6E636C, 0, 1, 2


@dataclass
class Split:
    x: np.ndarray  # (N, *input_shape) float64
    y: np.ndarray  # (N,) int64 labels, or (N, *out) float64 targets

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Dataset:
    train: Split
    val: Split | None
    test: Split | None
    info: dict = field(default_factory=dict)  # JSON-able: source, sizes, split, standardisation


def _rng(seed: int, *purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_DATA, *purpose)))


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the n training examples in ``epoch``: a pure function of (seed, epoch)."""
    return _rng(seed, _SHUFFLE, epoch).permutation(n)


def batches(
    split: Split, batch_size: int, order: np.ndarray | None = None, start: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Minibatches (x (B, ...), y (B, ...)) in ``order`` (None: as stored), from batch index ``start``.

    The last batch is smaller when batch_size does not divide N (nothing is dropped).
    """
    n = len(split.x)
    for b in range(start, -(-n // batch_size)):
        lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
        if order is None:
            yield split.x[lo:hi], split.y[lo:hi]
        else:
            idx = order[lo:hi]
            yield split.x[idx], split.y[idx]


# -- reading ----------------------------------------------------------------------------------------


# A data source is a function registered by name: (data config, seed) → (arrays with x, y and
# optionally x_test, y_test; info about the source for run.json). A name that is not registered is
# read as a path to the user's .npz or .csv file.


@data_sources.register("mnist1d")
def mnist1d(cfg: DataConfig, seed: int):
    return load_packaged("mnist1d"), {"kind": "builtin"}


@data_sources.register("digits")
def digits(cfg: DataConfig, seed: int):
    return load_packaged("digits"), {"kind": "builtin"}


def _check_synthetic_size(cfg: DataConfig, values_per_example: int) -> None:
    """Refuse, before anything is generated, a synthetic set that cannot fit in memory."""
    check_data_fits(
        cfg.n_samples * values_per_example, f"{cfg.n_samples:,} synthetic examples", field="data.n_samples"
    )


@data_sources.register("spirals")
def spirals(cfg: DataConfig, seed: int):
    if cfg.classes > cfg.n_samples:
        raise ConfigError(
            f"{cfg.classes:,} classes need at least as many examples, but data.n_samples is "
            f"{cfg.n_samples:,}",
            field="data.classes",
        )
    _check_synthetic_size(cfg, 3)  # x (N, 2) and y (N,)
    x, y = synthetic.spirals(cfg.n_samples, cfg.classes, cfg.noise, _rng(seed, _GENERATE))
    params = {"n_samples": cfg.n_samples, "noise": cfg.noise, "seed": seed, "classes": cfg.classes}
    return {"x": x, "y": y}, {"kind": "synthetic", "params": params}


@data_sources.register("regression1d")
def regression1d(cfg: DataConfig, seed: int):
    _check_synthetic_size(cfg, 2)  # x (N, 1) and y (N, 1)
    x, y = synthetic.regression1d(cfg.n_samples, cfg.noise, _rng(seed, _GENERATE))
    return {"x": x, "y": y}, {
        "kind": "synthetic",
        "params": {"n_samples": cfg.n_samples, "noise": cfg.noise, "seed": seed},
    }


def builtins() -> list[str]:
    """The names of the registered data sources (built-in and synthetic datasets)."""
    return list(data_sources.canonical_classes())


def _read_source(cfg: DataConfig, seed: int, base_dir: Path | None, target_kind: str = "real"):
    """(arrays with x, y[, x_test, y_test] — or ``prepared``, a table read by training/tables/prepared.py —,
    description for messages, info about the source)."""
    name = cfg.source.strip()
    key = data_sources.canonical(name)
    if key is not None:
        raw, info = data_sources.lookup(key)(cfg, seed)
        return raw, key, {"source": key, **info}
    if "\0" in name:
        raise ConfigError(
            "the path contains a NUL byte (\\x00), which no file name can hold", field="data.source"
        )
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.suffix.lower() not in USER_SUFFIXES:
        raise ConfigError(
            f"unknown data source '{name}'{did_you_mean(name, builtins())}: expected one of "
            f"{', '.join(builtins())} or a path to a .npz, .csv or .parquet file",
            field="data.source",
        )
    info = {"source": name, "kind": path.suffix.lower()[1:], "path": str(path.resolve())}
    if is_table(path):
        _file_exists(path, name)
        return {"prepared": read_prepared(path, cfg, name, target_kind)}, name, info
    return read_user_file(path, cfg, name), name, info


# -- splitting --------------------------------------------------------------------------------------


def _holdout(n_out: int, labels: np.ndarray | None, idx: np.ndarray, rng: np.random.Generator):
    """Split positions ``idx`` into (kept, held out) with ``n_out`` held out, both sorted.

    With ``labels`` (one per position) each class gives its exact share
    n_c · n_out / N floored, the few left over going to the largest remainders.
    """
    if labels is None:
        perm = rng.permutation(idx)
        out = perm[:n_out]
    else:
        classes, inv = np.unique(labels, return_inverse=True)
        counts = np.bincount(inv, minlength=len(classes))
        exact = counts * n_out / len(idx)
        take = np.floor(exact).astype(np.int64)
        extra = np.argsort(-(exact - take), kind="stable")[: n_out - int(take.sum())]
        take[extra] += 1
        out = np.concatenate([rng.permutation(idx[inv == c])[:k] for c, k in enumerate(take)])
    out = np.sort(out)
    return np.setdiff1d(idx, out, assume_unique=True), out


def _count(frac: float, n: int, what: str, where: str) -> int:
    k = int(round(frac * n))
    if k >= n:
        raise DataError(f"{where}: {what} of {frac:g} of {n} examples leaves none for training")
    return k


# -- the dataset ------------------------------------------------------------------------------------


def load_dataset(
    cfg: DataConfig,
    *,
    input_shape: tuple[int, ...],
    loss,
    seed: int,
    base_dir: Path | None = None,
    output_shape: tuple[int, ...] | None = None,
) -> Dataset:
    """Read, check, split and standardise ``cfg.source`` for a model taking ``input_shape`` per example.

    ``loss`` decides how targets are read (``loss.target_kind``: labels → int64, else float64) and
    whether splits are stratified; with ``output_shape`` its ``check_targets`` runs on every part and
    ``data.class_weights`` are set on it. Relative paths resolve against ``base_dir`` (the config's
    folder). A table (.csv, .parquet) is encoded by training/tables/ with statistics (one-hot
    categories, fill values) from the training split only, saved in ``info["preprocessing"]``.
    """
    kind = getattr(loss, "target_kind", "real")
    raw, where, info = _read_source(cfg, seed, base_dir, kind)
    prep = raw.get("prepared")
    _check_table_keys(cfg, prep is not None, where)
    if prep is not None:
        y, class_names, n = coerce_targets(prep.y, kind, where), prep.class_names, len(prep.y)
    else:
        x = fit_input_shape(check_inputs(raw["x"], raw.get("y"), where), input_shape, where)
        y, class_names = _array_labels(raw["y"], cfg, kind, where)
        n = len(x)
    labels = y.reshape(len(y)) if kind in ("class", "binary") and y.size == len(y) else None

    idx = np.arange(n)
    rng = _rng(seed, _SPLIT)
    test_from: str | None
    test_idx = val_idx = None
    if "x_test" in raw:
        test_from, test_frac = "published", None
    else:
        test_frac = cfg.test_split or (DIGITS_TEST_SPLIT if where == "digits" else 0.0)
        test_from = "held out" if test_frac > 0 else None
        n_test = _count(test_frac, n, "test_split", where)
        if n_test:
            idx, test_idx = _holdout(n_test, labels, idx, rng)
    n_val = _count(cfg.val_split, n, "val_split", where)
    if n_val >= len(idx):
        raise DataError(
            f"{where}: val_split {cfg.val_split:g} and test_split {test_frac:g} of "
            f"{n} examples leave none for training"
        )
    if n_val:
        idx, val_idx = _holdout(n_val, None if labels is None else labels[idx], idx, rng)

    spec = None
    if prep is not None:
        spec = fitting.fit(prep, idx)

        def part_of(rows, part: str) -> Split:
            values = blocks.take(prep.inputs, rows)
            xs = apply_preprocessing(
                spec, values, where=where, line=lambda i: prep.line(int(rows[i])), part=part
            )
            return Split(fit_input_shape(xs, input_shape, where), y[rows])
    else:

        def part_of(rows, part: str) -> Split:
            return Split(x[rows], y[rows])

    train = part_of(idx, "")
    val = part_of(val_idx, "validation") if val_idx is not None else None
    test = part_of(test_idx, "test") if test_idx is not None else None
    if "x_test" in raw:
        xt = fit_input_shape(check_inputs(raw["x_test"], raw["y_test"], where, "test"), input_shape, where)
        yt, _ = _array_labels(raw["y_test"], cfg, kind, where, "test", class_names)
        if np.shares_memory(xt, raw["x_test"]):  # standardised in place below: never the source's array
            xt = xt.copy()
        test = Split(xt, yt)
    digest = hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]

    parts = {"train": train, "val": val, "test": test}
    if output_shape is not None and hasattr(loss, "check_targets"):
        _check_class_count(class_names, kind, tuple(output_shape), where)
        for part, s in parts.items():
            if s is not None:
                try:
                    loss.check_targets(s.y, tuple(output_shape))
                except DataError as exc:
                    raise DataError(f"{where}: {part} targets: {exc.message}") from None
    weights = None
    if cfg.class_weights is not None:
        weights = class_weights(cfg.class_weights, kind, train.y, output_shape, class_names, where)
        loss.set_class_weights(np.asarray(weights))

    stats = None
    if cfg.standardize:
        mean = train.x.mean(axis=0)
        std = train.x.std(axis=0)
        std = np.where(std < STD_FLOOR, 1.0, std)
        for s in parts.values():
            if s is not None:  # in place: every part is this function's own copy
                s.x = np.asarray(s.x, dtype=np.float64)
                s.x -= mean
                s.x /= std
        stats = {"mean": mean.tolist(), "std": std.tolist()}

    info.update(
        {
            "input_shape": list(input_shape),
            "target_kind": kind,
            "sizes": {p: (len(s) if s is not None else 0) for p, s in parts.items()},
            "split": {
                "seed": seed,
                "method": "stratified" if labels is not None else "random",
                "val_fraction": cfg.val_split,
                "test_fraction": test_frac,
                "test": test_from,
                "train_indices_sha256": digest,
            },
            "standardization": stats,
        }
    )
    if class_names is not None:
        info["class_names"] = class_names
    if weights is not None:
        info["class_weights"] = weights
    if spec is not None:
        info["preprocessing"] = spec
    return Dataset(train=train, val=val, test=test, info=info)


def _check_table_keys(cfg: DataConfig, table: bool, where: str) -> None:
    """Refuse the keys that only a table can use, for a built-in set or an .npz."""
    if table:
        return
    for key in TABLE_KEYS:
        if getattr(cfg, key):
            raise ConfigError(
                f"applies to a .csv or .parquet file; {where} gives whole arrays (leave it out)",
                field=f"data.{key}",
            )
    if cfg.missing != "error":
        raise ConfigError(
            f"applies to a .csv or .parquet file; {where} gives whole arrays, which must hold no NaN",
            field="data.missing",
        )


def _array_labels(y, cfg: DataConfig, kind: str, where: str, part: str = "", names: list[str] | None = None):
    """(labels, class names or None) of an array source: text labels (or ``data.label_map``) become
    class indices; numbers are returned as they are (``coerce_targets`` checks them)."""
    y = np.asarray(y)
    if y.dtype.kind not in "US" and cfg.label_map is None:
        return coerce_targets(y, kind, where, part), None
    if y.ndim != 1:
        raise DataError(f"{where}: {part + ' ' if part else ''}labels must be one per example, got {y.shape}")
    texts = y.astype(str).astype(object)
    if names is not None:  # the test array of an .npz: the classes of its training array
        lookup = {n: i for i, n in enumerate(names)}
        if isinstance(cfg.label_map, dict):
            lookup = {label_key(k): int(v) for k, v in cfg.label_map.items()}
        out = encode_labels(texts, lookup, names, where, lambda i: f" (test example {i})", "labels")
        return out, names
    out, class_names = map_labels(texts, cfg, kind, where, lambda i: f" (example {i})", "labels")
    return coerce_targets(out, kind, where, part), class_names


def _check_class_count(names: list[str] | None, kind: str, output_shape: tuple[int, ...], where: str) -> None:
    if names is None:
        return
    want = 2 if kind == "binary" else (output_shape[0] if kind == "class" and output_shape else len(names))
    if len(names) != want:
        shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        model = "the logistic loss needs 2" if kind == "binary" else f"the model outputs {want} logits"
        raise DataError(f"{where}: the labels name {len(names)} classes ({shown}), but {model}")


def class_weights(setting, kind: str, y_train: np.ndarray, output_shape, names, where: str) -> list[float]:
    """Per-class weights for the cross-entropy: a list as given, or ``balanced``: N / (C · N_c) with
    N_c the class's examples in the training split (scikit-learn's ``balanced``)."""
    if kind != "class":
        raise ConfigError(
            "applies to the cross_entropy loss (weights per class of the softmax)", field="data.class_weights"
        )
    n_classes = int(output_shape[0]) if output_shape else (len(names) if names else int(y_train.max()) + 1)
    if isinstance(setting, list):
        if len(setting) != n_classes:
            raise ConfigError(
                f"gives {len(setting)} weights for {n_classes} classes", field="data.class_weights"
            )
        return [float(w) for w in setting]
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=n_classes)
    if (counts == 0).any():
        c = int(np.argmin(counts))
        label = f"'{names[c]}'" if names else str(c)
        raise DataError(
            f"{where}: class {label} has no example in the training split, so 'balanced' cannot weigh it",
            field="data.class_weights",
        )
    return [float(w) for w in len(y_train) / (n_classes * counts)]


def apply_standardization(x: np.ndarray, info: dict) -> np.ndarray:
    """x (N, *input_shape) standardised with a run's training statistics (``info`` of its Dataset)."""
    x = np.asarray(x, dtype=np.float64)
    stats = info.get("standardization")
    if not stats:
        return x
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    if x.shape[1:] != mean.shape:
        if x.ndim < 1 or int(np.prod(x.shape[1:])) != mean.size:
            raise DataError(
                f"inputs have shape {tuple(x.shape[1:])} per example, but the run was "
                f"trained on {tuple(mean.shape)}"
            )
        x = x.reshape((len(x), *mean.shape))
    return (x - mean) / std
