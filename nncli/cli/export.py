"""``nncli export RUN_DIR --format torch|onnx``: the trained model as a PyTorch file or an ONNX model."""

from __future__ import annotations

from pathlib import Path

import typer

from nncli.cli import app, err_console


@app.command("export")
def export(
    run_dir: Path = typer.Argument(..., help="The run folder to export."),
    fmt: str = typer.Option("torch", "--format", "-f", help="torch (a Python file) or onnx (opset 17)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Which checkpoint: best or last."),
    out: Path | None = typer.Option(
        None, "-o", "--out", help="Output file (default: <run>/export/model.py or model.onnx)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace the output file if it exists."),
):
    """Export a run's model: a self-contained PyTorch file that loads the checkpoint, or an ONNX model.

    Needs the optional extras: pip install 'nncli\\[torch]' or 'nncli\\[onnx]'. Never writes over
    a file of a run (only into its export/ folder) nor, without --force, over any existing file.
    """
    from nncli.export import export_run

    path = export_run(run_dir, fmt.lower(), checkpoint, out, force=force)
    err_console.print(f"wrote {path}")
