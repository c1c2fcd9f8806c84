"""Datasets for training: read a source, check it, split it with a seed and standardise it.

    load_dataset(cfg, input_shape=…, loss=…, seed=…)  →  Dataset(train, val, test, info)

The source is read by training/sources.py (a registered name, or the user's file). Splits
(training/holdout.py, seeded by training/data_seeds.py):

- a published test set (mnist1d's, or ``x_test``/``y_test`` in a user .npz) is kept as it is;
  otherwise ``test_split`` of the examples is held out (digits: 0.2 when ``test_split`` is 0);
- ``val_split`` of the examples that are not a published test set is held out for validation;
- for label losses (cross-entropy, logistic) both are stratified: every class keeps its proportion.

What is checked here: empty data, non-numeric dtypes, NaN/Inf, x/y length mismatches, per-example
sizes against the model's ``input_shape``, and fractional labels for label losses. The label *range*
(0 ≤ y < C) is the loss's to judge: pass ``output_shape`` and this module calls
``loss.check_targets`` on every part; without it the caller must.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from nncli.config.schema import DataConfig
from nncli.core.errors import ConfigError, DataError
from nncli.training.class_labels import array_labels, check_class_count, class_weights
from nncli.training.data_seeds import SPLIT, seeded_rng
from nncli.training.holdout import hold_out, holdout_size
from nncli.training.sources import read_source
from nncli.training.splits import Dataset, Split
from nncli.training.standardization import STD_FLOOR
from nncli.training.tables import blocks, fitting
from nncli.training.tables.encode import apply_preprocessing
from nncli.training.tables.table_files import TABLE_KEYS
from nncli.training.userdata import check_inputs, coerce_targets, fit_input_shape

#: digits has no published test set; this much of it is held out when test_split is 0
DIGITS_TEST_SPLIT = 0.2


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
    raw, where, info = read_source(cfg, seed, base_dir, kind)
    prep = raw.get("prepared")
    _check_table_keys(cfg, prep is not None, where)
    if prep is not None:
        y, class_names, n = coerce_targets(prep.y, kind, where), prep.class_names, len(prep.y)
    else:
        x = fit_input_shape(check_inputs(raw["x"], raw.get("y"), where), input_shape, where)
        y, class_names = array_labels(raw["y"], cfg, kind, where)
        n = len(x)
    labels = y.reshape(len(y)) if kind in ("class", "binary") and y.size == len(y) else None

    idx = np.arange(n)
    rng = seeded_rng(seed, SPLIT)
    test_from: str | None
    test_idx = val_idx = None
    if "x_test" in raw:
        test_from, test_frac = "published", None
    else:
        test_frac = cfg.test_split or (DIGITS_TEST_SPLIT if where == "digits" else 0.0)
        test_from = "held out" if test_frac > 0 else None
        n_test = holdout_size(test_frac, n, "test_split", where)
        if n_test:
            idx, test_idx = hold_out(n_test, labels, idx, rng)
    n_val = holdout_size(cfg.val_split, n, "val_split", where)
    if n_val >= len(idx):
        raise DataError(
            f"{where}: val_split {cfg.val_split:g} and test_split {test_frac:g} of "
            f"{n} examples leave none for training"
        )
    if n_val:
        idx, val_idx = hold_out(n_val, None if labels is None else labels[idx], idx, rng)

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
        yt, _ = array_labels(raw["y_test"], cfg, kind, where, "test", class_names)
        if np.shares_memory(xt, raw["x_test"]):  # standardised in place below: never the source's array
            xt = xt.copy()
        test = Split(xt, yt)
    digest = hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]

    parts = {"train": train, "val": val, "test": test}
    if output_shape is not None and hasattr(loss, "check_targets"):
        check_class_count(class_names, kind, tuple(output_shape), where)
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
