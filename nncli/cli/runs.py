"""``nncli runs [DIR]`` lists runs; ``nncli runs diff A B [C ...]`` shows what differs between runs."""

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
        None,
        metavar="[DIR] | diff A B [C ...]",
        help="A runs folder (default: runs), or: diff RUN RUN [RUN ...].",
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="Metric for the best column (default: each run's own train.best_metric)."
    ),
    all_keys: bool = typer.Option(False, "--all", help="diff: also list keys whose values are all equal."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output on stdout only."),
):
    """List runs (name, config, status, best metric, steps, wall time, a test metric), or diff several.

    The test column shows the test value of the metric in the best column (val_f1_macro → test
    f1_macro), else the test accuracy, else the test loss.

    ``diff`` shows only the config keys and metrics that differ, each with its change from the first run.
    """
    args = list(args or [])
    if args and args[0] == "diff" and not Path("diff").is_dir():
        if len(args) < 3:
            raise UserError("usage: nncli runs diff RUN_A RUN_B [RUN_C ...]")
        return _diff(args[1:], as_json, all_keys)
    if len(args) > 1:
        raise UserError(f"expected one runs folder, got {len(args)}: {' '.join(args)}")
    _table(args[0] if args else "runs", metric, as_json)


def _table(root: str, metric: str | None, as_json: bool) -> None:
    from nncli.runs.listing import fmt, list_runs

    rows = list_runs(
        root, metric, warn=lambda msg: err_console.print(f"warning: {msg}", markup=False, soft_wrap=True)
    )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        err_console.print(f"no runs in {root}")
        return
    table = Table(title=f"runs in {escape(root)}", title_style="bold")
    for col in ("run", "config", "status", "best", "steps", "wall time", "test"):
        # on a narrow terminal the names fold; status and numbers stay whole
        table.add_column(
            col,
            justify="right" if col in ("steps", "wall time", "test") else "left",
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
            f"{r['test_metric']} {fmt(r['test_value'])}" if r["test_metric"] else fmt(None),
        )
    out_console.print(table)


def _diff(paths: list[str], as_json: bool, all_keys: bool) -> None:
    from nncli.runs.listing import diff_runs, fmt

    d = diff_runs(*paths, all_keys=all_keys)
    if as_json:
        print(json.dumps(d, indent=2, default=str))
        return
    names = [Path(r).name for r in d["runs"]]
    for title, rows in (("config", d["config"]), ("metrics", d["metrics"])):
        table = Table(
            title=f"{title} (first run = reference)" if title == "metrics" else title, title_style="bold"
        )
        table.add_column("key")
        for name in names:
            table.add_column(escape(name), overflow="fold", justify="left" if title == "config" else "right")
        for r in rows:
            cells = [escape(fmt(r["values"][0]))]
            for v, dv in zip(r["values"][1:], (r.get("deltas") or [None] * len(r["values"]))[1:]):
                cell = escape(fmt(v))
                if dv is not None and dv != 0:
                    colour = "green" if dv > 0 else "red"
                    cell += f" [{colour}]({dv:+.3g})[/]"
                cells.append(cell)
            table.add_row(escape(r["key"]), *cells)
        if not rows:
            table.add_row(f"[dim](identical {title})[/]", *[""] * len(names))
        out_console.print(table)
