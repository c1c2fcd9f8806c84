"""The pyarrow engine: a streamed, multi-threaded C parser, read in ``BLOCK_BYTES`` blocks."""

from __future__ import annotations

import numpy as np

from nncli.training.tables.engines import BLOCK_BYTES, count_lines
from nncli.training.tables.table import Table, clean_text, object_array


def read_pyarrow(path, head, numeric, text, where, missing, dtype) -> Table:
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
    table.text = {j: clean_text(object_array(v), missing) for j, v in texts.items()}
    return table
