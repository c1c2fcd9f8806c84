"""The inputs of ``nncli predict``, chunk by chunk: a CSV file or stdin (``nncli.runs.predictions.csv_inputs``),
a Parquet file (columns by name, encoded with the run's preprocessing) or an .npz (the run's
``data.x_key`` array). Each chunk is a float64 array of at most ``batch`` rows (N, n_inputs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from nncli.core.errors import DataError, did_you_mean
from nncli.runs.loaded_run import LoadedRun
from nncli.runs.predictions.csv_inputs import csv_chunks


def read_chunks(loaded: LoadedRun, data: str, stdin: TextIO, batch: int) -> Iterator[np.ndarray]:
    """The inputs of ``data`` as float64 arrays of at most ``batch`` rows (N, n_inputs)."""
    n_in = int(np.prod(loaded.chain.input_shape))
    if data != "-" and Path(data).suffix.lower() == ".parquet":
        yield from _parquet_chunks(loaded, Path(data), batch)
        return
    if data != "-" and Path(data).suffix.lower() == ".npz":
        yield from _npz_chunks(loaded, Path(data), n_in, batch)
        return
    if data == "-":
        yield from csv_chunks(loaded, stdin, "<stdin>", n_in, batch)
        return
    try:
        fh = open(data, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise DataError(f"{data}: cannot open ({exc.strerror})") from None
    with fh:
        yield from csv_chunks(loaded, fh, data, n_in, batch)


def _npz_chunks(loaded: LoadedRun, path: Path, n_in: int, batch: int) -> Iterator[np.ndarray]:
    import zipfile

    key = loaded.config.data.x_key
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    if not hasattr(archive, "files"):
        raise DataError(f"{path}: expected an .npz archive of named arrays, got a single array")
    with archive:
        if key not in archive.files:
            raise DataError(
                f"{path}: no array named '{key}' (the run's data.x_key); the archive has "
                f"{list(archive.files)}{did_you_mean(key, list(archive.files))}"
            )
        try:
            x = archive[key]
        except ValueError:
            raise DataError(f"{path}: array '{key}' holds Python objects (dtype=object); refused") from None
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: array '{key}' must be numeric, got dtype {x.dtype}")
    if x.ndim < 1 or int(np.prod(x.shape[1:])) != n_in:
        raise DataError(
            f"{path}: array '{key}' has shape {tuple(x.shape)}, {int(np.prod(x.shape[1:]))} values per "
            f"example; the run's model takes {n_in} (input_shape {list(loaded.chain.input_shape)})"
        )
    if len(x) == 0:
        raise DataError(f"{path}: array '{key}' has no examples")
    x = x.reshape(len(x), n_in)
    for i in range(0, len(x), batch):
        part = x[i : i + batch].astype(np.float64)
        bad = ~np.isfinite(part).all(axis=1)
        if bad.any():
            raise DataError(f"{path}: array '{key}' has NaN or Inf in example {i + int(np.argmax(bad))}")
        yield part


def _parquet_chunks(loaded: LoadedRun, path: Path, batch: int) -> Iterator[np.ndarray]:
    """A Parquet file's rows, ``batch`` at a time, encoded with the run's preprocessing (columns by
    name; a run trained on arrays takes the file's columns in order)."""
    from nncli.training.tables.encode import apply_preprocessing
    from nncli.training.tables.engines import import_parquet
    from nncli.training.tables.raw_rows import input_positions

    pq = import_parquet(str(path))
    spec = loaded.preprocessing
    try:
        handle = pq.ParquetFile(path)
        names = list(handle.schema_arrow.names)
    except Exception as exc:  # pyarrow's own ArrowInvalid, OSError, ...
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    if spec is None:
        n_in = int(np.prod(loaded.chain.input_shape))
        spec = {
            "columns": names,
            "width": len(names),
            "target": {"column": None, "index": len(names)},
            "inputs": [
                {"column": c, "index": j, "kind": "number", "fill": None} for j, c in enumerate(names)
            ],
            "missing": "error",
            "missing_values": [],
        }
        if len(names) != n_in:
            raise DataError(f"{path}: has {len(names)} columns; the run's model takes {n_in} inputs")
    positions = input_positions(spec, names, len(names), str(path), 1)
    start = 0
    for part in handle.iter_batches(batch_size=batch, columns=[names[p] for p in positions]):
        values = []
        for entry, column in zip(spec["inputs"], part.columns, strict=True):
            if entry["kind"] == "onehot":
                texts = np.empty(len(column), dtype=object)
                texts[:] = [None if v is None else str(v).strip() for v in column.to_pylist()]
                values.append(texts)
            else:
                try:
                    values.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
                except (TypeError, ValueError):
                    raise DataError(
                        f"{path}: column '{entry['column']}' holds {column.type} values, not numbers"
                    ) from None

        def line(i: int, start: int = start) -> str:
            return f" (row {start + i + 1})"

        yield apply_preprocessing(spec, values, where=str(path), line=line)
        start += part.num_rows
    if start == 0:
        raise DataError(f"{path}: no data rows")
