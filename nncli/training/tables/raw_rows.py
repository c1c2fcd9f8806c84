"""A file the run did not train on (``predict``, ``eval``): the column of each spec input in it, and its
text cells as the raw values ``apply_preprocessing`` takes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nncli.core.errors import DataError, did_you_mean
from nncli.training.tables.spec import entry_name


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
                    f"{where}:{lines[i]}:{j + 1}: {entry_name(entry)}: '{c}' is not a number"
                ) from None
        out.append(v)
    return out
