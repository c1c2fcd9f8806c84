"""``nncli predict RUN DATA``: a run's predictions for unlabelled rows of a .csv / .parquet / .npz (or stdin).

The run's preprocessing (the training split's standardisation) is applied; a label column in the
input, if present, is ignored. Output by ``--out``'s suffix: .csv, .npz or .jsonl; CSV on stdout
without ``--out`` or with ``-``. A CSV is read and predicted in chunks, so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path

import typer

from nncli.cli import app, err_console
from nncli.runs.predictions.predict import predict_file


@app.command("predict")
def predict_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder made by nncli train."),
    data: str = typer.Argument(..., help="Inputs: a .csv, .parquet or .npz file, or - for CSV on stdin."),
    out: str | None = typer.Option(
        None, "--out", "-o", help="Write here: .csv, .npz or .jsonl (default, or -: CSV on stdout)."
    ),
    checkpoint: str | None = typer.Option(
        None, "--checkpoint", help="best or last (default: best, or last when the run has no best yet)."
    ),
    proba: bool = typer.Option(False, "--proba", help="Also write each class's probability (classifiers)."),
) -> None:
    """Predict with a trained run: one output row per input row (class, or regression values)."""
    result = predict_file(run_dir, data, out, checkpoint, proba)
    if result["out"] != "-":
        err_console.print(
            f"{result['rows']} predictions ({result['checkpoint']} checkpoint, step {result['step']}) "
            f"written to {result['out']}",
            markup=False,
            soft_wrap=True,
        )
