"""Predictions of a trained run on unlabelled data: ``nncli predict RUN DATA``.

    predict_file("runs/houses-…", "new.csv", out="pred.csv", proba=True)

The input is a .csv (or ``-``: CSV on stdin), a .parquet or an .npz (the run's ``data.x_key``
array), read and predicted chunk by chunk (``BATCH`` rows at a time, ``nncli.runs.predictions.inputs``),
so memory stays bounded however long the file is. Each chunk goes through ``LoadedRun.scores`` (the
training split's standardisation, then the model), whose outputs give the predictions (the loss's
``predict``, e.g. the argmax of the logits) and, with ``proba``, the class probabilities; they
become output rows (``nncli.runs.predictions.rows``).

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
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from nncli.core.errors import DataError, UserError
from nncli.runs.loaded_run import load_run
from nncli.runs.predictions.inputs import read_chunks
from nncli.runs.predictions.rows import (
    class_names,
    concat_predictions,
    output_columns,
    output_rows,
    predict_chunk,
)

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
            p, q = predict_chunk(loaded, x, proba)
            preds.append(p)
            probs.append(q)
            rows += len(x)
        arrays = {"prediction": concat_predictions(preds, loaded)}
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
                for record in output_rows(loaded, x, proba):
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
