"""``nncli plot RUN_DIR...``: loss and metric curves as a PNG, or as a chart in the terminal."""

from __future__ import annotations

from pathlib import Path

import typer

from nncli.cli import app, err_console, out_console


@app.command("plot")
def plot(
    run_dirs: list[Path] = typer.Argument(
        ..., help="Run folders, sweep folders (every trial) or glob patterns, drawn on one figure."
    ),
    out: Path | None = typer.Option(
        None, "-o", "--out", help="PNG file (default: <run>/curves.png for one run, curves.png otherwise)."
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="Metric of the second panel (default: val_acc when logged)."
    ),
    terminal: bool = typer.Option(False, "--terminal", help="Draw in the terminal instead of writing a PNG."),
    confusion: bool = typer.Option(
        False,
        "--confusion",
        help="Draw the run's confusion matrix instead of curves (default PNG: <run>/confusion.png).",
    ),
    width: int = typer.Option(1200, "--width", min=100, help="PNG width in pixels."),
    height: int = typer.Option(450, "--height", min=100, help="PNG height in pixels."),
):
    """Plot training and validation curves of one or several runs.

    Runs that differ only in their seed are drawn as one curve, the mean, with a ± std band. The folder
    of a search (nncli sweep --search) alone draws its optimisation history (history.png inside it);
    SWEEP_DIR/t* draws its trials' curves.

    --confusion draws one classifier run's confusion matrix: the one its summary.json holds (when its
    metrics: list it), else computed from its best checkpoint on its test split.

    Writes a PNG when matplotlib is installed (pip install 'nncli\\[plot]'); otherwise, or with
    --terminal, draws the curves in the terminal.
    """
    from nncli.viz.curves import have_matplotlib, plot_png, terminal_charts
    from nncli.viz.history import history_chart, is_search, plot_history_png

    if confusion:
        _confusion(run_dirs, out, terminal, (width, height))
        return

    if len(run_dirs) == 1 and is_search(run_dirs[0]) and metric is None:
        if terminal or (not have_matplotlib() and out is None):
            out_console.print(history_chart(run_dirs[0], width=min(max(out_console.width - 12, 20), 100)))
            return
        path = plot_history_png(run_dirs[0], out or run_dirs[0] / "history.png", size=(width, height))
        err_console.print(f"wrote {path}")
        return

    def warn(msg: str) -> None:
        err_console.print(f"warning: {msg}", markup=False, soft_wrap=True)

    if terminal or (not have_matplotlib() and out is None):
        if not terminal:
            err_console.print(
                "[dim]matplotlib is not installed (pip install 'nncli\\[plot]'); drawing in the terminal[/]"
            )
        cols = max(out_console.width - 12, 20)
        for chart in terminal_charts(run_dirs, metric, width=min(cols, 100), warn=warn):
            out_console.print(chart)
        return
    if out is None:
        # one run or one sweep folder: the PNG goes inside it
        one = len(run_dirs) == 1 and run_dirs[0].is_dir()
        out = run_dirs[0] / "curves.png" if one else Path("curves.png")
    path = plot_png(run_dirs, out, metric, size=(width, height), warn=warn)
    err_console.print(f"wrote {path}")


def _confusion(run_dirs: list[Path], out: Path | None, terminal: bool, size: tuple[int, int]) -> None:
    from nncli.core.errors import UserError
    from nncli.viz.confusion import confusion_table, find_confusion, plot_confusion_png
    from nncli.viz.curves import have_matplotlib

    if len(run_dirs) != 1:
        raise UserError(f"--confusion draws one run, got {len(run_dirs)} folders")
    c = find_confusion(run_dirs[0])
    if terminal or (not have_matplotlib() and out is None):
        if not terminal:
            err_console.print(
                "[dim]matplotlib is not installed (pip install 'nncli\\[plot]'); drawing in the terminal[/]"
            )
        out_console.print(confusion_table(c))
        return
    path = plot_confusion_png(c, out or run_dirs[0] / "confusion.png", size=size if out else (700, 600))
    err_console.print(f"wrote {path}")
