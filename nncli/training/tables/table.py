"""The columns read from a table: numbers in one float block, texts as object arrays of str."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nncli.training.tables.head import Head, is_blank


@dataclass
class Table:
    """The columns asked for; ``block[:, k]`` is file column ``numeric[k]``."""

    where: str
    head: Head
    block: np.ndarray  # (N, len(numeric)), NaN = missing
    numeric: list[int]
    text: dict[int, np.ndarray] = field(default_factory=dict)  # object arrays of str, None = missing
    lines: np.ndarray | None = None  # (N,) the file line of each row, when the engine knows it
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.block)

    def name(self, j: int) -> str:
        """How column ``j`` is named in messages: ``column 3 ('city')`` or ``column 3``."""
        names = self.head.names
        return f"column {j + 1}" + (f" ('{names[j]}')" if names else "")

    def line(self, row: int) -> str:
        """``:LINE`` for data row ``row`` (0-based), found by reading the file again when the engine
        did not keep line numbers; `` (row N)`` (N = ``row + 1``) for Parquet (no lines), a table
        without a path, or when reading the file again fails or does not reach the row."""
        if self.lines is not None:
            return f":{int(self.lines[row])}"
        if self.path is None or self.path.suffix.lower() == ".parquet":
            return f" (row {row + 1})"
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                seen = -1
                for cells in reader:
                    if reader.line_num <= self.head.skip_lines or is_blank(cells):
                        continue
                    seen += 1
                    if seen == row:
                        return f":{reader.line_num}"
        except (OSError, csv.Error, UnicodeDecodeError):
            pass
        return f" (row {row + 1})"


def object_array(values: list) -> np.ndarray:
    """A list (N,) as an object array (N,), its items kept as they are (str or None)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def clean_text(values: np.ndarray, missing) -> np.ndarray:
    """Stripped cells that are missing markers (``' NA '``) become None, as the python engine reads them."""
    for i, s in enumerate(values):
        if s is not None and s in missing:
            values[i] = None
    return values
