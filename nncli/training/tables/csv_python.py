"""The python engine: the csv module, in chunks of ``CHUNK_ROWS`` rows; always available, and the one
that names the line and column of a bad cell."""

from __future__ import annotations

import csv
import math

import numpy as np

from nncli.core.errors import DataError
from nncli.training.tables.engines import CHUNK_ROWS, count_lines
from nncli.training.tables.head import Head, is_blank, open_text
from nncli.training.tables.table import Table, object_array


def read_python(path, head, numeric, text, where, missing, dtype) -> Table:
    block = np.empty((count_lines(path), len(numeric)), dtype=dtype)
    texts: dict[int, list] = {j: [] for j in text}
    lines: list[int] = []
    rows: list[list[str]] = []
    n = 0

    def flush():
        nonlocal n
        for k, j in enumerate(numeric):
            block[n : n + len(rows), k] = _numbers([r[j] for r in rows], j, lines[n:], head, where, missing)
        for j in text:
            texts[j].extend(_strings([r[j] for r in rows], missing))
        n += len(rows)
        rows.clear()

    with open_text(path, where) as fh:
        reader = csv.reader(fh)
        try:
            for cells in reader:
                line = reader.line_num
                if line <= head.skip_lines or is_blank(cells):
                    continue
                if len(cells) != head.width:
                    raise DataError(
                        f"{where}:{line}: expected {head.width} columns (as on line {head.first_line}), "
                        f"got {len(cells)}"
                    )
                rows.append(cells)
                lines.append(line)
                if len(rows) >= CHUNK_ROWS:
                    flush()
            flush()
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{where}:{reader.line_num}: not readable as CSV text ({exc})") from None
    return Table(
        where,
        head,
        block[:n],
        list(numeric),
        {j: object_array(v) for j, v in texts.items()},
        np.asarray(lines, dtype=np.int64),
        path,
    )


def _numbers(cells: list[str], j: int, lines: list[int], head: Head, where: str, missing) -> np.ndarray:
    """One column of a chunk as float64, NaN for missing cells; DataError at the first text cell."""
    try:
        return np.array(cells, dtype=np.float64)  # the fast path: every cell a number
    except ValueError:
        pass
    out = np.empty(len(cells))
    for i, cell in enumerate(cells):
        s = cell.strip()
        if s in missing:
            out[i] = math.nan
            continue
        try:
            out[i] = float(s)
        except ValueError:
            label = f"column {j + 1}" + (f" ('{head.names[j]}')" if head.names else "")
            raise DataError(
                f"{where}:{lines[i]}: {label}: '{s}' is not a number; list the column in "
                f"data.categorical to one-hot encode it, or in data.drop to leave it out"
            ) from None
    return out


def _strings(cells: list[str], missing) -> list[str | None]:
    return [None if (s := c.strip()) in missing else s for c in cells]
