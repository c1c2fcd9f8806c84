"""The pandas engine: its C parser in chunks, after a check that every line has the header's width."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from nncli.training.tables.engines import BLOCK_BYTES, CHUNK_ROWS, count_lines
from nncli.training.tables.head import Head, is_blank, open_text
from nncli.training.tables.table import Table, clean_text, object_array


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
    with open_text(path, str(path)) as text:
        reader = csv.reader(text)
        return all(
            len(c) == head.width for c in reader if reader.line_num > head.skip_lines and not is_blank(c)
        )


def read_pandas(path, head, numeric, text, where, missing, dtype) -> Table:
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
    table.text = {j: clean_text(object_array(v), missing) for j, v in texts.items()}
    return table
