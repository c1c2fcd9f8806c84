"""Reading a table (.csv, .parquet) into numpy: numeric columns into one block, text columns as strings.

    head = read_head(path, header=True, where="houses.csv")       # column names (or None), width
    table = read_table(path, head, numeric=[0, 1, 3], text=[2, 4], engine="auto")
    table.block      # (N, 3) float64: columns 0, 1, 3; NaN where a cell is missing
    table.text[4]    # (N,) object array of str; None where a cell is missing

Only the columns asked for are converted. A cell is missing when, stripped of spaces, it is one of
``missing_values`` (``data.missing_values``); what happens to it is the caller's to decide.

Engines (``data.engine``): ``pyarrow`` (streamed, multi-threaded C parser), ``pandas`` (C parser in
chunks) and ``python`` (the csv module in chunks, always available). ``auto`` takes pyarrow, else
pandas, else python. Every engine fills one block preallocated from a count of the file's lines, so
peak memory stays near the size of that block (not of a table of Python floats). When a fast engine
cannot read a file (a text cell in a numeric column, a ragged line, an odd quoting), the python
engine reads it again: it gives the same numbers for every file it accepts and the message with the
line and column of the first bad cell for every file it refuses.
Parquet files need pyarrow (``pip install 'nncli[data]'``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nncli.core.errors import DataError

ENGINES = ("pyarrow", "pandas", "python")
#: rows converted at a time by the python and pandas engines (bounds their temporary memory)
CHUNK_ROWS = 8192
#: bytes read at a time when counting lines; pyarrow's block size (larger blocks: more memory read ahead, little speed)
BLOCK_BYTES = 1 << 20


@dataclass
class Head:
    """What the first line says: the column names (None without a header), the width, where data starts."""

    names: list[str] | None
    width: int
    skip_lines: int  # physical lines before the first data row (blank lines and the header)
    first_line: int  # the line of the header, else of the first row (for messages)


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
        did not keep line numbers; ``""`` for Parquet (no lines) or an unreadable file."""
        if self.lines is not None:
            return f":{int(self.lines[row])}"
        if self.path is None or self.path.suffix.lower() == ".parquet":
            return f" (row {row + 1})"
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                seen = -1
                for cells in reader:
                    if reader.line_num <= self.head.skip_lines or _blank(cells):
                        continue
                    seen += 1
                    if seen == row:
                        return f":{reader.line_num}"
        except (OSError, csv.Error, UnicodeDecodeError):
            pass
        return f" (row {row + 1})"


def _blank(cells: list[str]) -> bool:
    return not cells or (len(cells) == 1 and not cells[0].strip())


def _all_numbers(cells: list[str]) -> bool:
    try:
        for c in cells:
            float(c)
    except ValueError:
        return False
    return True


def _open_text(path: Path, where: str):
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot open ({exc.strerror})") from None


def read_head(path: Path, header: bool, where: str) -> Head:
    """The first non-blank line of a CSV: a header when ``header`` and it is not all numbers."""
    if path.suffix.lower() == ".parquet":
        pq = _parquet(where)
        try:
            names = list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises its own ArrowInvalid, OSError, ...
            raise DataError(f"{where}: not a readable Parquet file ({exc})") from None
        return Head(names, len(names), 0, 1)
    with _open_text(path, where) as fh:
        reader = csv.reader(fh)
        try:
            for cells in reader:
                if _blank(cells):
                    continue
                line = reader.line_num
                if header and not _all_numbers(cells):
                    return Head([c.strip() for c in cells], len(cells), line, line)
                return Head(None, len(cells), line - 1, line)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{where}:{reader.line_num}: not readable as CSV text ({exc})") from None
    raise DataError(f"{where}: no data rows")


def count_lines(path: Path) -> int:
    """An upper bound on the number of data rows: the newlines in the file, plus one."""
    n = 1
    with open(path, "rb") as fh:
        while chunk := fh.read(BLOCK_BYTES):
            n += chunk.count(b"\n")
    return n


def pick_engine(engine: str, where: str, parquet: bool = False) -> str:
    """The engine ``engine`` names (``auto``: the fastest installed), checked to be importable."""
    if parquet:
        _parquet(where)
        return "pyarrow"
    if engine == "auto":
        for name in ("pyarrow", "pandas"):
            if _importable(name):
                return name
        return "python"
    if engine != "python" and not _importable(engine):
        raise DataError(
            f"data.engine {engine}: {engine} is not installed; pip install 'nncli[data]' "
            f"(or use engine: python)",
            field="data.engine",
        )
    return engine


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _parquet(where: str):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{where}: reading Parquet files needs pyarrow; pip install 'nncli[data]'") from None
    return pq


def read_table(
    path: Path,
    head: Head,
    *,
    numeric: list[int],
    text: list[int],
    where: str,
    engine: str = "auto",
    missing_values=("",),
    dtype=np.float64,
) -> Table:
    """Columns ``numeric`` (into the float block, in that order) and ``text`` of ``path``."""
    parquet = path.suffix.lower() == ".parquet"
    name = pick_engine(engine, where, parquet)
    missing = frozenset(missing_values)
    if parquet:
        table = _read_parquet(path, head, numeric, text, where, missing, dtype)
    elif name == "python":
        table = _read_python(path, head, numeric, text, where, missing, dtype)
    else:
        reader = _read_pyarrow if name == "pyarrow" else _read_pandas
        try:
            table = reader(path, head, numeric, text, where, missing, dtype)
        except DataError:
            raise
        except Exception:  # the engine refused the file: the python engine says where and why
            table = _read_python(path, head, numeric, text, where, missing, dtype)
    if not len(table):
        raise DataError(f"{where}: no data rows" + (" after the header" if head.names else ""))
    return table


# -- the python engine -------------------------------------------------------------------------------


def _read_python(path, head, numeric, text, where, missing, dtype) -> Table:
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

    with _open_text(path, where) as fh:
        reader = csv.reader(fh)
        try:
            for cells in reader:
                line = reader.line_num
                if line <= head.skip_lines or _blank(cells):
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
        {j: _object_array(v) for j, v in texts.items()},
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


def _object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# -- pyarrow and pandas --------------------------------------------------------------------------------


def _read_pyarrow(path, head, numeric, text, where, missing, dtype) -> Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = head.names or [f"c{j}" for j in range(head.width)]
    if len(set(names)) != len(names):  # pyarrow needs distinct names to pick columns
        names = [f"c{j}" for j in range(head.width)]
    wanted = {names[j]: pa.float64() for j in numeric} | {names[j]: pa.string() for j in text}
    opened = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=head.skip_lines, block_size=BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            column_types=wanted,
            include_columns=list(wanted),
            null_values=sorted(missing),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    block = np.empty((count_lines(path), len(numeric)), dtype=dtype)
    texts: dict[int, list] = {j: [] for j in text}
    n = 0
    for batch in opened:
        m = batch.num_rows
        for k, j in enumerate(numeric):
            block[n : n + m, k] = batch.column(names[j]).to_numpy(zero_copy_only=False)
        for j in text:
            texts[j].extend(s.strip() if s is not None else None for s in batch.column(names[j]).to_pylist())
        n += m
    del opened
    pa.default_memory_pool().release_unused()  # the read-ahead blocks, back to the system
    table = Table(where, head, block[:n], list(numeric), {}, None, path)
    table.text = {j: _clean_text(_object_array(v), missing) for j, v in texts.items()}
    return table


def _clean_text(values: np.ndarray, missing) -> np.ndarray:
    """Stripped cells that are missing markers (``' NA '``) become None, as the python engine reads them."""
    for i, s in enumerate(values):
        if s is not None and s in missing:
            values[i] = None
    return values


def _line_widths_agree(path: Path, head: Head) -> bool:
    """Whether every non-blank data line has ``head.width`` fields: pandas pads a short line with
    missing values instead of refusing it. Counted on the bytes, block by block, when the file has
    no quotes (a separator inside quotes would be miscounted); with quotes, by the csv module."""
    with open(path, "rb") as fh:
        quoted = any(b'"' in chunk for chunk in iter(lambda: fh.read(BLOCK_BYTES), b""))
        fh.seek(0)
        if not quoted:
            line, carry = 0, b""
            while True:
                chunk = fh.read(BLOCK_BYTES)
                buf = carry + chunk
                if not chunk:  # the last line, without a newline
                    return not buf.strip() or line < head.skip_lines or buf.count(b",") == head.width - 1
                arr = np.frombuffer(buf, dtype=np.uint8)
                ends = np.flatnonzero(arr == 10)
                if not len(ends):
                    carry = buf
                    continue
                commas = np.searchsorted(np.flatnonzero(arr == 44), ends)
                per_line = np.diff(commas, prepend=0)
                starts = np.concatenate([[0], ends[:-1] + 1])
                blank = (ends == starts) | ((ends == starts + 1) & (arr[np.maximum(ends - 1, 0)] == 13))
                data = np.arange(line + 1, line + 1 + len(ends)) > head.skip_lines
                if (data & ~blank & (per_line != head.width - 1)).any():
                    return False
                line += len(ends)
                carry = buf[int(ends[-1]) + 1 :]
    with _open_text(path, str(path)) as text:
        reader = csv.reader(text)
        return all(
            len(c) == head.width for c in reader if reader.line_num > head.skip_lines and not _blank(c)
        )


def _read_pandas(path, head, numeric, text, where, missing, dtype) -> Table:
    import pandas as pd

    if not _line_widths_agree(path, head):
        raise ValueError("a line with another number of columns")  # the python engine says where
    columns = sorted(set(numeric) | set(text))
    block = np.empty((count_lines(path), len(numeric)), dtype=dtype)
    texts: dict[int, list] = {j: [] for j in text}
    n = 0
    chunks = pd.read_csv(
        path,
        header=None,
        skiprows=head.skip_lines,
        usecols=columns,
        dtype={j: (np.float64 if j in numeric else object) for j in columns},
        na_values=sorted(missing),
        keep_default_na=False,
        skip_blank_lines=True,
        encoding="utf-8-sig",
        chunksize=CHUNK_ROWS * 8,
        engine="c",
    )
    with chunks:
        for frame in chunks:
            m = len(frame)
            for k, j in enumerate(numeric):
                block[n : n + m, k] = frame[j].to_numpy(dtype=np.float64, na_value=np.nan)
            for j in text:
                texts[j].extend(None if not isinstance(v, str) else v.strip() for v in frame[j].tolist())
            n += m
    table = Table(where, head, block[:n], list(numeric), {}, None, path)
    table.text = {j: _clean_text(_object_array(v), missing) for j, v in texts.items()}
    return table


def _read_parquet(path, head, numeric, text, where, missing, dtype) -> Table:
    pq = _parquet(where)
    try:
        data = pq.read_table(path, columns=[head.names[j] for j in sorted(set(numeric) | set(text))])
    except Exception as exc:
        raise DataError(f"{where}: not a readable Parquet file ({exc})") from None
    names = head.names or []
    block = np.empty((data.num_rows, len(numeric)), dtype=dtype)
    for k, j in enumerate(numeric):
        col = data.column(names[j])
        kind = str(col.type)
        if not (kind.startswith(("int", "uint", "float", "double", "bool", "decimal", "halffloat"))):
            raise DataError(
                f"{where}: column {j + 1} ('{names[j]}') holds {kind} values, not numbers; list the "
                f"column in data.categorical to one-hot encode it, or in data.drop to leave it out"
            )
        block[:, k] = col.to_numpy(zero_copy_only=False).astype(np.float64)
    texts = {}
    for j in text:
        values = [None if v is None else str(v).strip() for v in data.column(names[j]).to_pylist()]
        texts[j] = _clean_text(_object_array(values), missing)
    return Table(where, head, block, list(numeric), texts, None, path)
