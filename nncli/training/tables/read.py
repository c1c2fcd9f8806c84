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

from pathlib import Path

import numpy as np

from nncli.core.errors import DataError
from nncli.training.tables.csv_pandas import read_pandas
from nncli.training.tables.csv_pyarrow import read_pyarrow
from nncli.training.tables.csv_python import read_python
from nncli.training.tables.engines import pick_engine
from nncli.training.tables.head import Head
from nncli.training.tables.parquet import read_parquet
from nncli.training.tables.table import Table


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
        table = read_parquet(path, head, numeric, text, where, missing, dtype)
    elif name == "python":
        table = read_python(path, head, numeric, text, where, missing, dtype)
    else:
        reader = read_pyarrow if name == "pyarrow" else read_pandas
        try:
            table = reader(path, head, numeric, text, where, missing, dtype)
        except DataError:
            raise
        except Exception:  # the engine refused the file: the python engine says where and why
            table = read_python(path, head, numeric, text, where, missing, dtype)
    if not len(table):
        raise DataError(f"{where}: no data rows" + (" after the header" if head.names else ""))
    return table
