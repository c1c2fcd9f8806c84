"""Predictions of a trained run on unlabelled data: ``nncli predict RUN DATA``.

    predict_file("runs/houses-…", "new.csv", out="pred.csv", proba=True)

The input is a .csv (or ``-``: CSV on stdin) or an .npz (the run's ``data.x_key`` array). A CSV is
read and predicted chunk by chunk (``BATCH`` rows at a time), so memory stays bounded however long
the file is; its columns are the run's inputs, in the training file's order, with or without the
label column (the run's ``data.target_column``, which is then ignored). Each chunk goes through
``LoadedRun.predict`` (the training split's standardisation, then the model).

The output format follows ``out``'s suffix: ``.csv`` (also stdout, ``-`` or None), ``.npz``
(arrays ``prediction`` and, with ``proba``, ``proba``) or ``.jsonl`` / ``.json`` (JSON lines, one
object per input). Columns: ``prediction`` (a class id, or the class name when the run saved class
names; for regression one column per output), then with ``proba`` one ``p_<class>`` column per class.
A file output is staged and moved into place at the end: a failed prediction leaves no partial file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from nncli.core.errors import DataError, UserError, did_you_mean
from nncli.runs.loaded_run import LoadedRun, load_run

BATCH = 1024
OUT_FORMATS = {".csv": "csv", ".npz": "npz", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def predict_file(
    run: Path | str,
    data: Path | str,
    out: Path | str | None = None,
    checkpoint: str | None = None,
    proba: bool = False,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    batch: int = BATCH,
) -> dict[str, Any]:
    """Predict every row of ``data`` with the run's model and write them to ``out`` (None or ``-``:
    CSV on ``stdout``). Returns ``{"rows", "out", "format", "checkpoint", "step"}``."""
    fmt = output_format(out)
    data_s = str(data)
    if data_s != "-" and Path(data_s).suffix.lower() not in (".csv", ".npz", ".parquet"):
        raise DataError(
            f"{data_s}: unsupported file type '{Path(data_s).suffix or Path(data_s).name}'; "
            f"expected .csv, .parquet, .npz or - (CSV on stdin)"
        )
    if data_s != "-" and not Path(data_s).is_file():
        raise DataError(f"{data_s}: file not found")
    loaded = load_run(run, checkpoint)
    if proba and not loaded.classifier:
        raise UserError("--proba: the run is a regression model (its loss gives no class probabilities)")
    columns = output_columns(loaded, proba)
    chunks = read_chunks(loaded, data_s, stdin if stdin is not None else sys.stdin, batch)
    first = next(chunks)  # the header and the first rows are checked before anything is written
    chunks = itertools.chain([first], chunks)
    rows = 0
    if fmt == "npz":
        preds, probs = [], []
        for x in chunks:
            p, q = _predict_chunk(loaded, x, proba)
            preds.append(p)
            probs.append(q)
            rows += len(x)
        arrays = {"prediction": _concat(preds, loaded)}
        if proba:
            arrays["proba"] = np.concatenate(probs) if probs else np.empty((0, len(columns) - 1))
        names = class_names(loaded)
        if names is not None:
            arrays["classes"] = np.asarray(names)
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=True, **arrays)  # numpy's default, named so **arrays cannot be it
        _stage(Path(out), lambda fh: fh.write(buf.getvalue()), binary=True)  # type: ignore[arg-type]
    else:

        def write(fh: TextIO) -> int:
            n = 0
            writer = csv.writer(fh, lineterminator="\n") if fmt == "csv" else None
            if writer is not None:
                writer.writerow(columns)
            for x in chunks:
                for record in _records(loaded, x, proba):
                    if writer is not None:
                        writer.writerow(record)
                    else:
                        fh.write(json.dumps(dict(zip(columns, record, strict=True))) + "\n")
                n += len(x)
            return n

        if out is None or str(out) == "-":
            rows = write(stdout if stdout is not None else sys.stdout)
        else:
            rows = _stage(Path(out), write)
    return {
        "rows": rows,
        "out": "-" if out is None else str(out),
        "format": fmt,
        "checkpoint": loaded.checkpoint,
        "step": loaded.step,
    }


def output_format(out: Path | str | None) -> str:
    if out is None or str(out) == "-":
        return "csv"
    suffix = Path(out).suffix.lower()
    if suffix not in OUT_FORMATS:
        raise UserError(
            f"--out {out}: unsupported output type '{suffix or Path(out).name}'; expected one of "
            f"{', '.join(OUT_FORMATS)} (or - for CSV on stdout)"
        )
    return OUT_FORMATS[suffix]


def class_names(loaded: LoadedRun) -> list[str] | None:
    """The class names the run saved (run.json ``data.class_names``), or None (class ids are used)."""
    names = (loaded.info.get("data") or {}).get("class_names")
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _n_classes(loaded: LoadedRun) -> int:
    shape = tuple(loaded.chain.output_shape())
    return 2 if loaded.chain.loss.target_kind == "binary" else int(shape[-1])


def output_columns(loaded: LoadedRun, proba: bool) -> list[str]:
    if not loaded.classifier:
        size = int(np.prod(loaded.chain.output_shape()))
        return ["prediction"] if size == 1 else [f"prediction_{i}" for i in range(size)]
    names = class_names(loaded) or [str(i) for i in range(_n_classes(loaded))]
    return ["prediction"] + ([f"p_{n}" for n in names] if proba else [])


def probabilities(loaded: LoadedRun, h: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) from the model's outputs: softmax for cross-entropy, sigmoid (as
    [1 − p, p]) for the logistic loss."""
    h = np.asarray(h, dtype=np.float64)
    if loaded.chain.loss.target_kind == "binary":
        p1 = 1.0 / (1.0 + np.exp(-np.clip(h.reshape(len(h)), -700, 700)))
        return np.stack([1.0 - p1, p1], axis=1)
    z = h.reshape(len(h), -1)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _predict_chunk(loaded: LoadedRun, x: np.ndarray, proba: bool):
    h = loaded.scores(x)
    pred = loaded.chain.loss.predict(h) if loaded.chain.loss is not None else h
    return pred, (probabilities(loaded, h) if proba else None)


def _concat(preds: list[np.ndarray], loaded: LoadedRun) -> np.ndarray:
    if preds:
        return np.concatenate(preds)
    return np.empty((0,) if loaded.classifier else (0, *loaded.chain.output_shape()))


def _records(loaded: LoadedRun, x: np.ndarray, proba: bool) -> Iterator[list]:
    pred, prob = _predict_chunk(loaded, x, proba)
    if not loaded.classifier:
        for row in np.asarray(pred, dtype=np.float64).reshape(len(x), -1):
            yield [float(v) for v in row]
        return
    names = class_names(loaded)
    for i, c in enumerate(np.asarray(pred).reshape(len(x))):
        label: Any = names[int(c)] if names is not None and 0 <= c < len(names) else int(c)
        yield [label] + ([float(p) for p in prob[i]] if proba else [])


def _stage(path: Path, write, binary: bool = False) -> Any:
    """``write(fh)`` into a temporary file beside ``path``, then moved onto ``path``; nothing is left
    behind when ``write`` fails."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"--out {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            result = write(fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return result


# -- reading the inputs ------------------------------------------------------------------------------


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
        yield from _csv_chunks(loaded, stdin, "<stdin>", n_in, batch)
        return
    try:
        fh = open(data, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise DataError(f"{data}: cannot open ({exc.strerror})") from None
    with fh:
        yield from _csv_chunks(loaded, fh, data, n_in, batch)


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


def _csv_chunks(loaded: LoadedRun, fh: TextIO, where: str, n_in: int, batch: int) -> Iterator[np.ndarray]:
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
