"""``nncli runs [DIR]`` lists runs; ``nncli runs diff A B`` compares two runs' configs and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from nncli.cli import app, err_console, out_console
from nncli.core.errors import UserError


@app.command("runs")
def runs(
    args: list[str] | None = typer.Argument(
        None, metavar="[DIR] | diff A B", help="A runs folder (default: runs), or: diff RUN_A RUN_B."
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="Metric for the best column (default val_acc, else val_loss)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output on stdout only."),
):
    """List runs (name, config, status, best metric, steps, wall time, test accuracy), or diff two."""
    args = list(args or [])
    if args and args[0] == "diff" and not Path("diff").is_dir():
        if len(args) != 3:
            raise UserError("usage: nncli runs diff RUN_A RUN_B")
        return _diff(args[1], args[2], as_json)
    if len(args) > 1:
        raise UserError(f"expected one runs folder, got {len(args)}: {' '.join(args)}")
    _table(args[0] if args else "runs", metric, as_json)


def _table(root: str, metric: str | None, as_json: bool) -> None:
    from nncli.runs.listing import fmt, list_runs

    rows = list_runs(root, metric)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        err_console.print(f"no runs in {root}")
        return
    table = Table(title=f"runs in {escape(root)}", title_style="bold")
    for col in ("run", "config", "status", "best", "steps", "wall time", "test acc"):
        # on a narrow terminal the names fold; status and numbers stay whole
        table.add_column(
            col,
            justify="right" if col in ("steps", "wall time", "test acc") else "left",
            no_wrap=col not in ("run", "config"),
            overflow="fold",
        )
    style = {"completed": "green", "failed": "red", "diverged": "red", "running": "yellow"}
    for r in rows:
        best = f"{r['best_metric']} {fmt(r['best_value'])}" if r["best_metric"] else fmt(None)
        wall = f"{r['wall_time']:.1f}s" if isinstance(r["wall_time"], (int, float)) else fmt(None)
        table.add_row(
            escape(r["run"]),
            escape(fmt(r["config"])),
            f"[{style.get(r['status'], 'dim')}]{escape(str(r['status']))}[/]",
            best,
            fmt(r["steps"]),
            wall,
            fmt(r["test_acc"]),
        )
    out_console.print(table)


def _diff(a: str, b: str, as_json: bool) -> None:
    from nncli.runs.listing import diff_runs, fmt

    d = diff_runs(a, b)
    if as_json:
        print(json.dumps(d, indent=2, default=str))
        return
    for title, rows, only_changed in (("config", d["config"], True), ("metrics", d["metrics"], False)):
        table = Table(title=title, title_style="bold")
        table.add_column("key")
        table.add_column(escape(Path(d["a"]).name))
        table.add_column(escape(Path(d["b"]).name))
        for r in rows:
            same = r["a"] == r["b"]
            mark = "" if same else "[bold]"
            table.add_row(escape(r["key"]), mark + escape(fmt(r["a"])), mark + escape(fmt(r["b"])))
        if not rows and only_changed:
            table.add_row("[dim](identical configs)[/]", "", "")
        out_console.print(table)
