"""``nncli export RUN_DIR --format torch|onnx``: the trained model as a PyTorch file or an ONNX model."""

from __future__ import annotations

from pathlib import Path

import typer

from nncli.cli import app, err_console


@app.command("export")
def export(
    run_dir: Path = typer.Argument(..., help="The run folder to export."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="torch (a Python file and its weights) or onnx (opset 17); default: from --out's suffix, else torch.",
    ),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Which checkpoint: best or last."),
    out: Path | None = typer.Option(
        None, "-o", "--out", help="Output file (default: <run>/export/model.py or model.onnx)."
    ),
    network_only: bool = typer.Option(
        False,
        "--network-only",
        help="Export the bare network, which takes inputs already standardised as in training "
        "(the statistics stay in the file); by default the export takes raw inputs, like nncli predict.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace the output file(s) if they exist."),
):
    """Export a run's model: a self-contained PyTorch file that loads the weights beside it, or an ONNX model.

    The export includes the run's preprocessing (the training standardisation; for a table also the
    missing-cell fills and the one-hot encoding of categorical columns) and its class names, so raw
    rows give what nncli predict gives. Needs the optional extras: pip install
    'nncli\\[torch]' or 'nncli\\[onnx]'. Never writes over a file of a run (only into its export/
    folder) nor, without --force, over any existing file.
    """
    from nncli.export import choose_format, export_run, weights_beside

    fmt = choose_format(fmt, out)
    path = export_run(run_dir, fmt, checkpoint, out, force=force, network_only=network_only)
    if fmt == "onnx":
        err_console.print(f"wrote {path}", markup=False, soft_wrap=True)
    else:
        err_console.print(
            f"wrote {path} and its weights {weights_beside(path)}", markup=False, soft_wrap=True
        )
