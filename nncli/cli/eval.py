"""``nncli eval RUN_DIR``: a run's checkpoint on its test split, or on a data file of your own.

A file given with ``--data`` is read with the run's data settings (``x_key``/``y_key``, CSV target
column) and standardised with the statistics saved in the run's run.json, the training split's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from nncli.cli import app, err_console
from nncli.runs.evaluate import evaluate


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder made by nncli train."),
    data: Path | None = typer.Option(None, "--data", help="Evaluate on this .npz / .csv instead."),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help="best or last (default: best, or last when the run has "
        "no best yet, e.g. it was killed before its first evaluation).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON to stdout."),
) -> None:
    """Evaluate a run's best (or last) checkpoint: mean loss and, for classifiers, accuracy."""
    result = evaluate(run_dir, data, checkpoint)
    if json_out:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    from rich.table import Table

    err_console.print(
        f"{result['run']}: {result['checkpoint']} checkpoint (step {result['step']}) on {result['split']}",
        markup=False,
        soft_wrap=True,
    )
    table = Table()
    table.add_column("examples", justify="right")
    table.add_column("loss", justify="right")
    row = [str(result["examples"]), f"{result['loss']:.4f}"]
    if "acc" in result:
        table.add_column("accuracy", justify="right")
        row.append(f"{result['acc']:.2%}")
    table.add_row(*row)
    err_console.print(table)
