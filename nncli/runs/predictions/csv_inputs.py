"""CSV inputs for ``nncli predict``: its columns are the run's inputs, in the training file's order,
with or without the label column (the run's ``data.target_column``, which is then ignored). A run
trained on a table encodes the rows with its preprocessing (run.json ``data.preprocessing``)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from typing import TextIO

import numpy as np

from nncli.core.errors import DataError
from nncli.runs.loaded_run import LoadedRun


def _table_chunks(loaded: LoadedRun, fh: TextIO, where: str, batch: int) -> Iterator[np.ndarray]:
    """CSV rows encoded with the run's preprocessing (run.json ``data.preprocessing``): columns
    matched by name (or position), missing cells filled, categories one-hot encoded."""
    from nncli.training.tables.encode import apply_preprocessing
    from nncli.training.tables.head import all_numbers, is_blank
    from nncli.training.tables.raw_rows import cells_to_values, input_positions

    spec = loaded.preprocessing
    assert spec is not None
    reader = csv.reader(fh)
    positions: list[int] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    width = first_line = yielded = 0
    header = None

    def encode() -> np.ndarray:
        values = cells_to_values(spec, rows, positions or [], where, lines)
        return apply_preprocessing(spec, values, where=where, line=lambda i: f":{lines[i]}")

    try:
        for cells in reader:
            line = reader.line_num
            if is_blank(cells):
                continue
            if positions is None:
                width, first_line = len(cells), line
                if loaded.config.data.csv_header and not all_numbers(cells):
                    header = [c.strip() for c in cells]
                    positions = input_positions(spec, header, width, where, line)
                    continue
                positions = input_positions(spec, None, width, where, line)
            if len(cells) != width:
                raise DataError(
                    f"{where}:{line}: expected {width} columns (as on line {first_line}), got {len(cells)}"
                )
            rows.append(cells)
            lines.append(line)
            if len(rows) >= batch:
                yielded += len(rows)
                yield encode()
                rows, lines = [], []
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{where}:{reader.line_num}: not readable as CSV text ({exc})") from None
    if not rows and not yielded:
        raise DataError(f"{where}: no data rows" + (" after the header" if header else ""))
    if rows:
        yield encode()


def csv_chunks(loaded: LoadedRun, fh: TextIO, where: str, n_in: int, batch: int) -> Iterator[np.ndarray]:
    """The CSV rows of ``fh`` as float64 arrays of at most ``batch`` rows: the ``n_in`` input columns,
    or for a run trained on a table the rows encoded with its preprocessing."""
    from nncli.training.tables.head import all_numbers

    if loaded.preprocessing is not None:
        yield from _table_chunks(loaded, fh, where, batch)
        return
    cfg = loaded.config.data
    reader = csv.reader(fh)
    header: list[str] | None = None
    keep: list[int] | None = None
    rows: list[list[float]] = []
    width = first_line = yielded = 0
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if keep is None:
                if cfg.csv_header and not all_numbers(cells):
                    header = [c.strip() for c in cells]
                    width, first_line = len(cells), line
                    keep = _input_columns(header, width, n_in, cfg.target_column, where, line)
                    continue
                width, first_line = len(cells), line
                keep = _input_columns(None, width, n_in, cfg.target_column, where, line)
            if len(cells) != width:
                raise DataError(
                    f"{where}:{line}: expected {width} columns (as on line {first_line}), got {len(cells)}"
                )
            rows.append([_cell(cells[j], line, j, header, where) for j in keep])
            if len(rows) >= batch:
                yielded += len(rows)
                yield np.array(rows, dtype=np.float64)
                rows = []
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{where}:{reader.line_num}: not readable as CSV text ({exc})") from None
    if not rows and not yielded:
        raise DataError(f"{where}: no data rows" + (" after the header" if header else ""))
    if rows:
        yield np.array(rows, dtype=np.float64)


def _input_columns(header, width: int, n_in: int, target, where: str, line: int) -> list[int]:
    """The indices of the input columns: all of them when there are ``n_in``; without the label
    column (``data.target_column``) when there is one more."""
    named = isinstance(target, str) and not target.lstrip("-").isdigit()
    if header is not None and named and target in header:
        t = header.index(target)
        if width - 1 == n_in:
            return [j for j in range(width) if j != t]
        raise DataError(
            f"{where}:{line}: {width} columns with the label column '{target}', so {width - 1} inputs; "
            f"the run's model takes {n_in}"
        )
    if width == n_in:
        return list(range(width))
    if width == n_in + 1 and not named:
        t = int(target) % width
        return [j for j in range(width) if j != t]
    label = f"'{target}'" if named else f"index {target}"
    raise DataError(
        f"{where}:{line}: expected {n_in} columns (the run's inputs) or {n_in + 1} with the label "
        f"column ({label}), got {width}"
    )


def _cell(cell: str, line: int, col: int, header, where: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
        what = "an empty cell" if not text else f"'{text}'"
        name = f" ('{header[col]}')" if header else ""
        raise DataError(f"{where}:{line}:{col + 1}: column {col + 1}{name}: {what} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}:{line}:{col + 1}: column {col + 1}: {text} is not a finite number")
    return value
