"""A table read for training: columns chosen, rows with a missing cell left out or refused, labels mapped
(the spec's statistics are fitted later, on the training split only: fitting.py).

Missing cells. ``error`` refuses the first one (file, line, column); ``drop`` leaves out every row
with a missing input or label, in training, ``eval`` and its test split (``predict`` refuses such a
row: it must give one prediction per row); ``mean`` / ``median`` fill a number column with the
training split's mean / median and a categorical column with its most frequent training category
(a missing label can only be dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nncli.config.schema import DataConfig
from nncli.core.errors import DataError
from nncli.training.tables.blocks import take
from nncli.training.tables.columns import choose_columns
from nncli.training.tables.head import read_head
from nncli.training.tables.labels import map_labels
from nncli.training.tables.read import read_table
from nncli.training.tables.spec import FORMAT
from nncli.training.tables.table import Table


@dataclass
class Prepared:
    """A table read for training: the raw inputs per spec entry and the labels, for the rows kept."""

    where: str
    table: Table
    spec: dict[str, Any]  # the format of spec.py, not yet fitted (fill and categories null)
    inputs: list[np.ndarray]  # per spec input: float64 (NaN = missing) or object str (None = missing)
    y: np.ndarray  # (N,) labels (int64 after coerce) or targets (float64)
    class_names: list[str] | None
    rows: np.ndarray  # the table rows kept, for messages

    def line(self, i: int) -> str:
        return self.table.line(int(self.rows[i]))


def read_prepared(path: Path, cfg: DataConfig, where: str, target_kind: str) -> Prepared:
    """Read ``path`` with the data section ``cfg``: columns chosen, missing rows dropped (``drop``),
    labels mapped. Every problem is a DataError / ConfigError naming the file, line and column."""
    head = read_head(path, cfg.csv_header, where)
    target, inputs, categorical = choose_columns(cfg, head, where)
    numeric = [j for j in inputs if j not in categorical]
    text = [j for j in inputs if j in categorical] + [target]
    table = read_table(
        path,
        head,
        numeric=numeric,
        text=text,
        where=where,
        engine=cfg.engine,
        missing_values=cfg.missing_values,
    )
    block_col = {j: k for k, j in enumerate(numeric)}
    raw = [table.block[:, block_col[j]] if j in block_col else table.text[j] for j in inputs]
    bad = np.isinf(table.block)
    if bad.any():
        r, k = np.argwhere(bad)[0]
        raise DataError(
            f"{where}{table.line(int(r))}: {table.name(numeric[k])}: {table.block[r, k]:g} is not a finite number"
        )
    labels = table.text[target]
    rows = np.arange(len(table))
    missing_label = np.array([t is None for t in labels], dtype=bool)
    missing_any = missing_label.copy()
    if table.block.size:  # the number columns in one contiguous pass
        missing_any |= np.isnan(table.block).any(axis=1)
    for values in raw:
        if values.dtype == object:
            missing_any |= is_missing(values)
    if cfg.missing == "drop":
        rows = np.flatnonzero(~missing_any)
        if not len(rows):
            raise DataError(
                f"{where}: every row has a missing cell (data.missing: drop left none)", field="data.missing"
            )
    elif missing_any.any():
        r = int(np.argmax(missing_label)) if missing_label.any() else None
        if r is not None:
            raise DataError(
                f"{where}{table.line(r)}: {table.name(target)}: the label is missing; rows without a "
                f"label can only be left out (data.missing: drop)",
                field="data.missing",
            )
        if cfg.missing == "error":
            r = int(np.argmax(missing_any))
            j = next(j for j, v in zip(inputs, raw, strict=True) if is_missing(v[r : r + 1])[0])
            raise DataError(
                f"{where}{table.line(r)}: {table.name(j)}: a missing value; data.missing is 'error': "
                f"set it to drop (leave such rows out), mean or median (fill from the training split)",
                field="data.missing",
            )
    if len(rows) != len(table):
        raw = take(raw, rows)
        labels = labels[rows]

    def line(i: int) -> str:
        return table.line(int(rows[i]))

    y, class_names = map_labels(labels, cfg, target_kind, where, line, table.name(target))
    names = head.names
    spec = {
        "format": FORMAT,
        "columns": names,
        "width": head.width,
        "target": {"column": names[target] if names else None, "index": target},
        "inputs": [
            {
                "column": names[j] if names else None,
                "index": j,
                "kind": "onehot" if j in categorical else "number",
                **({"categories": None} if j in categorical else {}),
                "fill": None,
            }
            for j in inputs
        ],
        "n_inputs": None,
        "missing": cfg.missing,
        "missing_values": list(cfg.missing_values),
        "unknown_category": cfg.unknown_category,
        "rows": {"read": len(table), "dropped": len(table) - len(rows)},
    }
    return Prepared(where, table, spec, raw, y, class_names, rows)


def is_missing(values: np.ndarray) -> np.ndarray:
    """(N,) bool: NaN in a number column, None in a text column."""
    if values.dtype == object:
        return np.array([v is None for v in values], dtype=bool)
    return np.isnan(values)
