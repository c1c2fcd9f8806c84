"""A labelled table encoded with a trained run's spec (``nncli eval --data``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nncli.config.schema import DataConfig
from nncli.core.errors import DataError, did_you_mean
from nncli.training.tables.encode import apply_preprocessing
from nncli.training.tables.head import read_head
from nncli.training.tables.labels import as_numbers, encode_labels
from nncli.training.tables.prepared import is_missing
from nncli.training.tables.raw_rows import input_positions
from nncli.training.tables.read import read_table


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
            gap |= is_missing(v)
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
        numbers = as_numbers(labels)
        if numbers is None:
            i = next(i for i, t in enumerate(labels) if as_numbers(np.array([t], dtype=object)) is None)
            raise DataError(f"{where}{line(i)}: {table.name(target)}: '{labels[i]}' is not a number")
        y = numbers
    return apply_preprocessing(spec, values, where=where, line=line), y
