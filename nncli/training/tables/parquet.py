"""Parquet files, read through pyarrow (``pip install 'nncli[data]'``)."""

from __future__ import annotations

import numpy as np

from nncli.core.errors import DataError
from nncli.training.tables.engines import import_parquet
from nncli.training.tables.table import Table, clean_text, object_array


def read_parquet(path, head, numeric, text, where, missing, dtype) -> Table:
    pq = import_parquet(where)
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
        texts[j] = clean_text(object_array(values), missing)
    return Table(where, head, block, list(numeric), texts, None, path)
