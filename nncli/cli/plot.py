"""``nncli plot RUN_DIR...``: loss and metric curves as a PNG, or as a chart in the terminal;
``nncli plot RUN_DIR --watch``: the per-layer records of ``train.watch`` over the steps."""

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
    watch: bool = typer.Option(
        False,
        "--watch",
        help="Draw one run's watch.jsonl (train.watch) per layer: output and gradient norms, update "
        "ratios, dead/saturated units, normalisation statistics (default PNG: <run>/watch.png).",
    ),
    width: int | None = typer.Option(
        None, "--width", min=100, help="PNG width in pixels \\[default: 1200; 1500 with --watch]."
    ),
    height: int | None = typer.Option(
        None, "--height", min=100, help="PNG height in pixels \\[default: 450; 800 with --watch]."
    ),
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
    from nncli.viz.curves import DEFAULT_SIZE, have_matplotlib, plot_png, terminal_charts
    from nncli.viz.history import history_chart, is_search, plot_history_png
    from nncli.viz.watch import WATCH_SIZE

    if watch:
        _plot_watch(run_dirs, out, metric, terminal, (width or WATCH_SIZE[0], height or WATCH_SIZE[1]))
        return
    size = (width or DEFAULT_SIZE[0], height or DEFAULT_SIZE[1])

    if confusion:
        _confusion(run_dirs, out, terminal, size)
        return

    if len(run_dirs) == 1 and is_search(run_dirs[0]) and metric is None:
        if terminal or (not have_matplotlib() and out is None):
            out_console.print(history_chart(run_dirs[0], width=min(max(out_console.width - 12, 20), 100)))
            return
        path = plot_history_png(run_dirs[0], out or run_dirs[0] / "history.png", size=size)
        err_console.print(f"wrote {path}")
        return

    if _in_terminal(terminal, out):
        cols = max(out_console.width - 12, 20)
        for chart in terminal_charts(run_dirs, metric, width=min(cols, 100), warn=_warn):
            out_console.print(chart)
        return
    if out is None:
        # one run or one sweep folder: the PNG goes inside it
        one = len(run_dirs) == 1 and run_dirs[0].is_dir()
        out = run_dirs[0] / "curves.png" if one else Path("curves.png")
    path = plot_png(run_dirs, out, metric, size=size, warn=_warn)
    err_console.print(f"wrote {path}")


def _warn(msg: str) -> None:
    err_console.print(f"warning: {msg}", markup=False, soft_wrap=True)


def _in_terminal(terminal: bool, out: Path | None) -> bool:
    """Whether to draw in the terminal: asked to, or no matplotlib and no -o (said on stderr)."""
    from nncli.viz.curves import have_matplotlib

    if terminal:
        return True
    if have_matplotlib() or out is not None:
        return False
    err_console.print(
        "[dim]matplotlib is not installed (pip install 'nncli\\[plot]'); drawing in the terminal[/]"
    )
    return True


def _plot_watch(run_dirs: list[Path], out: Path | None, metric, terminal: bool, size) -> None:
    from nncli.core.errors import UserError
    from nncli.viz.watch import plot_watch_png, watch_charts

    if len(run_dirs) != 1 or metric is not None:
        raise UserError("--watch draws one run folder (and takes no --metric)")
    run = run_dirs[0]
    if _in_terminal(terminal, out):
        for chart in watch_charts(run, width=min(max(out_console.width - 12, 20), 100), warn=_warn):
            out_console.print(chart)
        return
    path = plot_watch_png(run, out or run / "watch.png", size=size, warn=_warn)
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
