"""A table's head: the column names (or None without a header), the width and where the data starts."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from nncli.core.errors import DataError
from nncli.training.tables.engines import import_parquet


@dataclass
class Head:
    """What the first line says: the column names (None without a header), the width, where data starts."""

    names: list[str] | None
    width: int
    skip_lines: int  # physical lines before the first data row (blank lines and the header)
    first_line: int  # the line of the header, else of the first row (for messages)


def is_blank(cells: list[str]) -> bool:
    """Whether a CSV line is blank (no cell, or one of spaces only): such lines are skipped everywhere."""
    return not cells or (len(cells) == 1 and not cells[0].strip())


def all_numbers(cells: list[str]) -> bool:
    """Whether every cell reads as a float (then a first line is data, not a header)."""
    try:
        for c in cells:
            float(c)
    except ValueError:
        return False
    return True


def open_text(path: Path, where: str):
    """``path`` opened as CSV text (UTF-8, a byte-order mark skipped); DataError when it cannot be."""
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot open ({exc.strerror})") from None


def read_head(path: Path, header: bool, where: str) -> Head:
    """The first non-blank line of a CSV: a header when ``header`` and it is not all numbers."""
    if path.suffix.lower() == ".parquet":
        pq = import_parquet(where)
        try:
            names = list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises its own ArrowInvalid, OSError, ...
            raise DataError(f"{where}: not a readable Parquet file ({exc})") from None
        return Head(names, len(names), 0, 1)
    with open_text(path, where) as fh:
        reader = csv.reader(fh)
        try:
            for cells in reader:
                if is_blank(cells):
                    continue
                line = reader.line_num
                if header and not all_numbers(cells):
                    return Head([c.strip() for c in cells], len(cells), line, line)
                return Head(None, len(cells), line - 1, line)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{where}:{reader.line_num}: not readable as CSV text ({exc})") from None
    raise DataError(f"{where}: no data rows")
