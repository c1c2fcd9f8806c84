"""``nncli eval RUN_DIR``: a run's checkpoint on its test split, or on a data file of your own.

A file given with ``--data`` is read with the run's data settings (``x_key``/``y_key``, CSV target
column) and standardised with the statistics saved in the run's run.json, the training split's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
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
    metrics: list[str] | None = typer.Option(
        None,
        "--metrics",
        help="Metrics to compute instead of the run's own, comma-separated or repeated "
        "(e.g. f1_macro,roc_auc,confusion_matrix; see README 'Metrics').",
    ),
) -> None:
    """Evaluate a run's best (or last) checkpoint: the mean loss and the run's metrics (accuracy for a
    classifier by default, what its config's metrics: lists, or --metrics)."""
    names = [n.strip() for item in metrics for n in item.split(",") if n.strip()] if metrics else None
    result = evaluate(run_dir, data, checkpoint, names)
    if json_out:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    from rich.table import Table

    from nncli.viz.progress import metric_spec, scalar_keys

    err_console.print(
        f"{result['run']}: {result['checkpoint']} checkpoint (step {result['step']}) on {result['split']}",
        markup=False,
        soft_wrap=True,
    )
    table = Table()
    keys = scalar_keys({k: v for k, v in result.items() if k not in _IDENTITY})
    table.add_column("examples", justify="right")
    for key in keys:
        table.add_column("accuracy" if key == "acc" else key, justify="right")
    table.add_row(str(result["examples"]), *(_cell(result[k], metric_spec(k)) for k in keys))
    err_console.print(table)
    if "confusion_matrix" in result:
        from nncli.viz.confusion import Confusion, class_labels, confusion_table

        m = np.asarray(result["confusion_matrix"])
        source = f"{result['split']}, {result['checkpoint']} checkpoint"
        labels = class_labels(Path(run_dir), len(m))
        err_console.print(confusion_table(Confusion(m, labels, source, result["run"])))


#: fields of eval's result that say what was evaluated, not how well
_IDENTITY = ("run", "checkpoint", "step", "split", "examples")


def _cell(value, spec: str) -> str:
    return "–" if value is None or value != value else format(value, spec)
