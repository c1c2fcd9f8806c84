"""A table's columns → model inputs and labels, with statistics from the training split only.

    prep = read_prepared(path, cfg, where, target_kind)      # columns chosen, labels mapped, rows kept
    spec = fit(prep, train_rows)                             # one-hot categories, fill values
    x = apply_preprocessing(spec, prep.inputs)               # (N, n_inputs) float64

The data section decides (``nncli.config.schema.DataConfig``): ``features`` or ``drop`` (names or
0-based indices; negative from the end), ``target_column``, ``categorical`` (one-hot encoded),
``unknown_category`` (``error`` | ``ignore``), ``label_map``, ``missing`` (``error`` | ``drop`` |
``mean`` | ``median``) and ``missing_values`` (the cells that count as missing).

Labels. A classifier's label column is read as text: when every label is a number it is a class id,
as before; otherwise the distinct labels, sorted, are the classes (``cat, dog`` → 0, 1) and their
names are saved in run.json as ``data.class_names``. ``label_map`` declares the mapping instead, as
``{raw label: class index}`` (``{-1: 0, 1: 1}`` for the logistic loss's −1/+1 labels) or as a list
(class i is the i-th entry); any other label is then an error. A label matches a key when the texts
agree or both are numbers and equal (``1.0`` matches ``1``).

Missing cells. ``error`` refuses the first one (file, line, column); ``drop`` leaves out every row
with a missing input or label, in training, ``eval`` and its test split (``predict`` refuses such a
row: it must give one prediction per row); ``mean`` / ``median`` fill a number column with the
training split's mean / median and a categorical column with its most frequent training category
(a missing label can only be dropped).

The run's preprocessing: run.json ``data.preprocessing`` (format ``nncli.tabular/1``), plain JSON::

    {"format": "nncli.tabular/1",
     "columns": ["size", "age", "city", "note", "label"],   # the training file's header, or null
     "width": 5,                                            # its number of columns
     "target": {"column": "label", "index": 4},             # column is null without a header
     "inputs": [                                            # in the model's input order
       {"column": "size", "index": 0, "kind": "number", "fill": null},
       {"column": "age",  "index": 1, "kind": "number", "fill": 41.5},
       {"column": "city", "index": 2, "kind": "onehot", "categories": ["a", "b"], "fill": null}],
     "n_inputs": 4,                                         # numbers + Σ len(categories)
     "missing": "mean", "missing_values": ["", "NA", ...], "unknown_category": "error",
     "rows": {"read": 100, "dropped": 0}}

A raw row becomes the model's input vector as follows (``apply_preprocessing``; then the training
split's standardisation, run.json ``data.standardization``: (v − mean) / std over all n_inputs):

- ``number``: the cell as a float; a missing cell (NaN, or a ``missing_values`` text) becomes
  ``fill``, or is an error when ``fill`` is null; ±inf is an error. One input.
- ``onehot``: the stripped cell text compared with ``categories`` (sorted training categories):
  ``len(categories)`` inputs, 1 at the match and 0 elsewhere; missing → ``fill`` (or an error);
  a text not in ``categories`` → all zeros with ``unknown_category: ignore``, else an error.

A file being predicted is matched by column name when the run's file had a header (other columns
are ignored), else by position (``width`` columns, or ``width − 1`` without the target's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nncli.config.schema import DataConfig
from nncli.core.errors import ConfigError, DataError, did_you_mean
from nncli.training.tabular_read import Head, Table, read_head, read_table

FORMAT = "nncli.tabular/1"
TABLE_SUFFIXES = (".csv", ".parquet")
#: the data keys that only a table (.csv, .parquet) can use
TABLE_KEYS = ("features", "drop", "categorical")


@dataclass
class Prepared:
    """A table read for training: the raw inputs per spec entry and the labels, for the rows kept."""

    where: str
    table: Table
    spec: dict[str, Any]  # the format above, not yet fitted (fill and categories null)
    inputs: list[np.ndarray]  # per spec input: float64 (NaN = missing) or object str (None = missing)
    y: np.ndarray  # (N,) labels (int64 after coerce) or targets (float64)
    class_names: list[str] | None
    rows: np.ndarray  # the table rows kept, for messages

    def line(self, i: int) -> str:
        return self.table.line(int(self.rows[i]))


# -- choosing columns ---------------------------------------------------------------------------------


def column_index(ref, head: Head, where: str, field: str) -> int:
    """File column ``ref`` (a header name, or a 0-based index, negative from the end)."""
    names, width = head.names, head.width
    if isinstance(ref, str) and (names is None or ref not in names) and not ref.lstrip("-").isdigit():
        if names is None:
            raise DataError(
                f"{where}: '{ref}' is a name, but the file has no header (data.csv_header is "
                f"false or the first line is all numbers); give the column's 0-based index instead",
                field=field,
            )
        raise DataError(
            f"{where}: no column named '{ref}'; the header has {names}{did_you_mean(ref, names)}", field=field
        )
    if isinstance(ref, str) and names is not None and ref in names:
        return names.index(ref)
    j = int(ref)
    if not -width <= j < width:
        raise DataError(f"{where}: column index {j} is out of range for {width} columns", field=field)
    return j % width


def choose_columns(cfg: DataConfig, head: Head, where: str) -> tuple[int, list[int], set[int]]:
    """(target column, input columns in model order, the categorical ones) for ``cfg`` and the file's head."""
    if head.width < 2:
        raise DataError(f"{where}: needs at least two columns (inputs and a target), got {head.width}")
    target = column_index(cfg.target_column, head, where, "data.target_column")
    label = _label(head, target)
    if cfg.features is not None:
        inputs: list[int] = []
        for i, ref in enumerate(cfg.features):
            j = column_index(ref, head, where, f"data.features[{i}]")
            if j == target:
                raise ConfigError(
                    f"{where}: {label} is the target column, not an input", field=f"data.features[{i}]"
                )
            if j in inputs:
                raise ConfigError(f"{where}: {_label(head, j)} is listed twice", field=f"data.features[{i}]")
            inputs.append(j)
        if not inputs:
            raise ConfigError("lists no column; the model needs at least one input", field="data.features")
    else:
        dropped = set()
        for i, ref in enumerate(cfg.drop):
            j = column_index(ref, head, where, f"data.drop[{i}]")
            if j == target:
                raise ConfigError(
                    f"{where}: {label} is the target column (data.target_column); it is never an input",
                    field=f"data.drop[{i}]",
                )
            dropped.add(j)
        inputs = [j for j in range(head.width) if j != target and j not in dropped]
        if not inputs:
            raise ConfigError(f"{where}: every input column is dropped", field="data.drop")
    categorical = set()
    for i, ref in enumerate(cfg.categorical):
        j = column_index(ref, head, where, f"data.categorical[{i}]")
        if j not in inputs:
            why = "the target column" if j == target else "not an input (see data.features / data.drop)"
            raise ConfigError(f"{where}: {_label(head, j)} is {why}", field=f"data.categorical[{i}]")
        categorical.add(j)
    return target, inputs, categorical


def _label(head: Head, j: int) -> str:
    return f"column {j + 1}" + (f" ('{head.names[j]}')" if head.names else "")


# -- labels -------------------------------------------------------------------------------------------


def label_key(value) -> str:
    """The text a label is compared by: numbers canonical (``1.0``, ``1`` and ``+1`` → ``1``), else the text."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return str(int(number)) if number == int(number) else repr(number)


def declared_classes(label_map, field: str = "data.label_map") -> list[str]:
    """Class names in class order from ``data.label_map`` (a list, or ``{raw label: class index}``)."""
    if isinstance(label_map, list):
        keys = [label_key(v) for v in label_map]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"lists a label twice: {label_map}", field=field)
        return keys
    by_index: dict[int, str] = {}
    for raw, index in label_map.items():
        if index < 0:
            raise ConfigError(f"class indices start at 0, got {index} for {raw!r}", field=field)
        by_index.setdefault(index, label_key(raw))
    missing = [i for i in range(max(by_index, default=-1) + 1) if i not in by_index]
    if missing or not by_index:
        raise ConfigError(
            f"every class 0 … {max(by_index, default=0)} needs a label; none maps to {missing}", field=field
        )
    return [by_index[i] for i in range(len(by_index))]


def _label_lookup(label_map, class_names: list[str]) -> dict[str, int]:
    if isinstance(label_map, dict):
        return {label_key(k): int(v) for k, v in label_map.items()}
    return {name: i for i, name in enumerate(class_names)}


def encode_labels(
    texts: np.ndarray,
    lookup: dict[str, int],
    class_names: list[str],
    where: str,
    line: Callable[[int], str],
    seen: str,
) -> np.ndarray:
    """Label texts (N,) → class indices (N,) int64; a label not in ``lookup`` is a DataError."""
    out = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        c = lookup.get(label_key(t), -1)
        if c < 0:
            shown = ", ".join(class_names[:20]) + (" …" if len(class_names) > 20 else "")
            raise DataError(
                f"{where}{line(i)}: label '{t}' is not one of the {seen} ({shown})"
                f"{did_you_mean(str(t), class_names)}",
                field="data.label_map" if seen.startswith("labels of data.label_map") else None,
            )
        out[i] = c
    return out


def map_labels(prep_texts, cfg: DataConfig, target_kind: str, where: str, line, target_name: str):
    """(y, class names or None) from the label column's texts (no missing ones left)."""
    if cfg.label_map is not None:
        if target_kind not in ("class", "binary"):
            raise ConfigError(
                "maps labels to classes, but the loss takes real-valued targets (use cross_entropy or logistic)",
                field="data.label_map",
            )
        names = declared_classes(cfg.label_map)
        lookup = _label_lookup(cfg.label_map, names)
        return encode_labels(prep_texts, lookup, names, where, line, "labels of data.label_map"), names
    numbers = _as_numbers(prep_texts)
    if numbers is not None:
        return numbers, None
    if target_kind not in ("class", "binary"):
        i = next(i for i, t in enumerate(prep_texts) if _as_numbers(np.array([t], dtype=object)) is None)
        raise DataError(f"{where}{line(i)}: {target_name}: '{prep_texts[i]}' is not a number")
    names = sorted({str(t) for t in prep_texts})
    return encode_labels(prep_texts, {n: i for i, n in enumerate(names)}, names, where, line, "labels"), names


def _as_numbers(texts: np.ndarray) -> np.ndarray | None:
    try:
        return np.array(texts.tolist(), dtype=np.float64) if len(texts) else np.empty(0)
    except (ValueError, TypeError):
        return None


# -- reading a table for training -------------------------------------------------------------------


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
            missing_any |= _missing(values)
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
            j = next(j for j, v in zip(inputs, raw, strict=True) if _missing(v[r : r + 1])[0])
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


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.array([v is None for v in values], dtype=bool)
    return np.isnan(values)


def fit(prep: Prepared, train_rows: np.ndarray) -> dict[str, Any]:
    """The spec with the training split's statistics: one-hot categories and fill values."""
    spec = {**prep.spec, "inputs": [dict(i) for i in prep.spec["inputs"]]}
    policy = spec["missing"]
    for entry, values in zip(spec["inputs"], prep.inputs, strict=True):
        name = _entry_name(entry)
        if entry["kind"] == "number":
            if policy in ("mean", "median"):  # kept even without a gap in training: predict may meet one
                part = values[train_rows]
                present = part[~np.isnan(part)]
                if not len(present):
                    raise DataError(
                        f"{prep.where}: {name} has no value in the training split to take the {policy} of",
                        field="data.missing",
                    )
                entry["fill"] = float(np.mean(present) if policy == "mean" else np.median(present))
            continue
        present = np.array([v for v in values[train_rows] if v is not None], dtype=object)
        if not len(present):
            raise DataError(
                f"{prep.where}: {name} has no category in the training split", field="data.categorical"
            )
        cats, counts = np.unique(present.astype(str), return_counts=True)
        entry["categories"] = [str(c) for c in cats]
        if policy in ("mean", "median"):
            entry["fill"] = str(cats[int(np.argmax(counts))])  # the most frequent (first in order on ties)
    spec["n_inputs"] = n_inputs(spec)
    return spec


def n_inputs(spec: dict[str, Any]) -> int:
    return sum(1 if e["kind"] == "number" else len(e["categories"]) for e in spec["inputs"])


def _entry_name(entry: dict) -> str:
    return f"column {entry['index'] + 1}" + (f" ('{entry['column']}')" if entry.get("column") else "")


# -- applying the spec --------------------------------------------------------------------------------


def apply_preprocessing(
    spec: dict[str, Any],
    values: Sequence[np.ndarray],
    *,
    where: str = "inputs",
    line: Callable[[int], str] | None = None,
    part: str = "",
) -> np.ndarray:
    """Raw columns → the model's inputs (N, n_inputs) float64, before standardisation.

    ``values[k]`` holds the raw values (N,) of ``spec["inputs"][k]``: numbers (float, NaN =
    missing) for a ``number`` entry, texts (str; None or a ``missing_values`` text = missing) for
    ``onehot``. ``line(i)`` says where row i is (``":12"``) in messages; ``part`` names the split.
    """
    line = line or (lambda i: f" (row {i + 1})")
    n = len(values[0]) if len(values) else 0
    base = block_of(values) if all(e["kind"] == "number" for e in spec["inputs"]) else None
    # numbers only, already one float64 block (the reader's): filled in place, no copy
    if base is not None and np.isfinite(base).all():  # the common case, checked in one pass
        return base
    out = base if base is not None else np.zeros((n, n_inputs(spec)), dtype=np.float64)
    missing_texts = set(spec.get("missing_values", ()))
    unknown = spec.get("unknown_category", "error")
    in_part = f" (in the {part} split)" if part else ""
    col = 0
    for entry, raw in zip(spec["inputs"], values, strict=True):
        name = _entry_name(entry)
        if entry["kind"] == "number":
            v = np.asarray(raw, dtype=np.float64)
            miss = np.isnan(v)
            if miss.any():
                if entry["fill"] is None:
                    i = int(np.argmax(miss))
                    raise DataError(f"{where}{line(i)}: {name}: a missing value{_no_fill(spec)}")
                v = np.where(miss, entry["fill"], v)
            if np.isinf(v).any():
                i = int(np.argmax(np.isinf(v)))
                raise DataError(f"{where}{line(i)}: {name}: {v[i]:g} is not a finite number")
            if base is None or miss.any():
                out[:, col] = v
            col += 1
            continue
        cats = entry["categories"]
        index = {c: k for k, c in enumerate(cats)}
        codes = np.empty(n, dtype=np.int64)
        for i, cell in enumerate(raw):
            text = None if cell is None else str(cell).strip()
            if text is None or text in missing_texts:
                if entry["fill"] is None:
                    raise DataError(f"{where}{line(i)}: {name}: a missing value{_no_fill(spec)}")
                text = entry["fill"]
            k = index.get(text, -1)
            if k < 0 and unknown != "ignore":
                shown = ", ".join(cats[:20]) + (" …" if len(cats) > 20 else "")
                raise DataError(
                    f"{where}{line(i)}: {name}: category '{text}'{in_part} was not in the training split "
                    f"({shown}){did_you_mean(text, cats)}; data.unknown_category: ignore encodes unknown "
                    f"categories as all zeros"
                )
            codes[i] = k
        known = codes >= 0
        out[np.flatnonzero(known), col + codes[known]] = 1.0
        col += len(cats)
    return out


def block_of(values: Sequence[np.ndarray]) -> np.ndarray | None:
    """The float64 (N, k) array whose columns ``values`` are, in order, when they are exactly that
    (the reader's block): then the inputs need no copy. Else None."""
    if not len(values):
        return None
    base = values[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 2 or base.dtype != np.float64:
        return None
    if base.shape[1] != len(values) or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    for k, v in enumerate(values):
        if v.base is not base or v.shape != (len(base),) or v.strides != (base.strides[0],):
            return None
        if v.__array_interface__["data"][0] != start + k * base.itemsize:
            return None
    return base


def take(values: Sequence[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    """``[v[rows] for v in values]``, as columns of one new block when ``values`` share one."""
    base = block_of(values)
    if base is None:
        return [v[rows] for v in values]
    sub = base[rows]
    return [sub[:, k] for k in range(sub.shape[1])]


def _no_fill(spec: dict) -> str:
    policy = spec.get("missing", "error")
    if policy == "drop":
        return " (the run left such rows out in training, so it has no value to fill one with)"
    return "; data.missing is 'error': set it to drop, mean or median"


# -- rows of text (predict, eval) -----------------------------------------------------------------------


def input_positions(
    spec: dict[str, Any], names: list[str] | None, width: int, where: str, line: int
) -> list[int]:
    """For a file being predicted or evaluated: the column of each spec input in that file.

    With the run's header, by name (other columns ignored); else by position, in a file of the run's
    width or of one column fewer (the target left out).
    """
    inputs = spec["inputs"]
    if spec.get("columns") is not None and names is not None:
        out = []
        for e in inputs:
            if e["column"] not in names:
                raise DataError(
                    f"{where}:{line}: no column named '{e['column']}' (an input of the run); the header has "
                    f"{names}{did_you_mean(e['column'], names)}"
                )
            out.append(names.index(e["column"]))
        return out
    full, t = spec["width"], spec["target"]["index"]
    if width == full:
        return [e["index"] for e in inputs]
    if width == full - 1:
        return [e["index"] - (e["index"] > t) for e in inputs]
    raise DataError(
        f"{where}:{line}: expected {full} columns (as the run's training file) or {full - 1} without the "
        f"label column, got {width}"
    )


def cells_to_values(
    spec: dict[str, Any], rows: list[list[str]], positions: list[int], where: str, lines: Sequence[int]
) -> list[np.ndarray]:
    """Text rows → ``values`` for ``apply_preprocessing``: number cells parsed (missing → NaN; a text
    cell is a DataError at its line and column), one-hot cells stripped (missing → None)."""
    missing = set(spec.get("missing_values", ("",)))
    out = []
    for entry, j in zip(spec["inputs"], positions, strict=True):
        cells = [r[j].strip() for r in rows]
        if entry["kind"] == "onehot":
            values = np.empty(len(cells), dtype=object)
            values[:] = [None if c in missing else c for c in cells]
            out.append(values)
            continue
        v = np.empty(len(cells))
        for i, c in enumerate(cells):
            if c in missing:
                v[i] = math.nan
                continue
            try:
                v[i] = float(c)
            except ValueError:
                raise DataError(
                    f"{where}:{lines[i]}:{j + 1}: {_entry_name(entry)}: '{c}' is not a number"
                ) from None
        out.append(v)
    return out


def read_for_run(
    path: Path,
    spec: dict[str, Any],
    class_names: list[str] | None,
    cfg: DataConfig,
    target_kind: str,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """A labelled table encoded with a trained run's ``spec`` (``nncli eval --data``): (x (N, n_inputs)
    before standardisation, y (N,)). Labels must be among the run's ``class_names``; rows with a
    missing cell are left out when the run's policy is ``drop``."""
    head = read_head(path, cfg.csv_header, where)
    positions = input_positions(spec, head.names, head.width, where, head.first_line)
    t_name, t_index = spec["target"]["column"], spec["target"]["index"]
    if spec.get("columns") is not None and head.names is not None:
        if t_name not in head.names:
            raise DataError(
                f"{where}:{head.first_line}: no label column '{t_name}' (the run's target){did_you_mean(t_name, head.names)}; "
                f"nncli predict takes unlabelled rows"
            )
        target = head.names.index(t_name)
    elif head.width == spec["width"]:
        target = t_index
    else:
        raise DataError(
            f"{where}: has {head.width} columns, one fewer than the run's training file: no label column"
        )
    number = [p for e, p in zip(spec["inputs"], positions, strict=True) if e["kind"] == "number"]
    text = sorted(
        {p for e, p in zip(spec["inputs"], positions, strict=True) if e["kind"] == "onehot"} | {target}
    )
    table = read_table(
        path,
        head,
        numeric=number,
        text=text,
        where=where,
        engine=cfg.engine,
        missing_values=spec["missing_values"],
    )
    column = {j: k for k, j in enumerate(number)}
    values = [
        table.block[:, column[p]] if e["kind"] == "number" else table.text[p]
        for e, p in zip(spec["inputs"], positions, strict=True)
    ]
    labels = table.text[target]
    rows = np.arange(len(table))
    no_label = np.array([t is None for t in labels], dtype=bool)
    if spec["missing"] == "drop":
        gap = no_label.copy()
        for v in values:
            gap |= _missing(v)
        rows = np.flatnonzero(~gap)
        values, labels = [v[rows] for v in values], labels[rows]
    elif no_label.any():
        r = int(np.argmax(no_label))
        raise DataError(f"{where}{table.line(r)}: {table.name(target)}: the label is missing")

    def line(i: int) -> str:
        return table.line(int(rows[i]))

    if class_names is not None:
        lookup = {name: i for i, name in enumerate(class_names)}
        y = encode_labels(labels, lookup, class_names, where, line, "classes the run was trained on")
    else:
        numbers = _as_numbers(labels)
        if numbers is None:
            i = next(i for i, t in enumerate(labels) if _as_numbers(np.array([t], dtype=object)) is None)
            raise DataError(f"{where}{line(i)}: {table.name(target)}: '{labels[i]}' is not a number")
        y = numbers
    return apply_preprocessing(spec, values, where=where, line=line), y


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES
