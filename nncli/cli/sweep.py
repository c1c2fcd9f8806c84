"""``nncli sweep CONFIG --grid path=v1,v2 ...``: train every combination, then rank them;
``nncli sweep CONFIG --search tpe --trials N --param path=dist(...)``: a search on Optuna."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from nncli.cli import app, err_console, out_console
from nncli.cli.textout import stdout_kept_for_json


@app.command("sweep")
def sweep(
    config: Path | None = typer.Argument(None, help="The base YAML config (not with --resume)."),
    grid: list[str] | None = typer.Option(None, "--grid", help="path=v1,v2,...  (repeat for more axes)."),
    seeds: int | None = typer.Option(
        None, "--seeds", help="Repeat each combination with N seeds (the config's seed, +1, ...)."
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Trials run at the same time."),
    backend: str = typer.Option("local", "--backend", help="local (worker processes) or ray (Ray tasks)."),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="HOST:PORT of a Ray cluster's head, as `ray start --head` prints it (default: a local instance). "
        "Several nodes need nncli on each and the sweep folder on a shared filesystem.",
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Run again what an interrupted sweep left in this sweep folder."
    ),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the sweep folder is created."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override for every trial: path=value."),
    metric: str | None = typer.Option(
        None, "--metric", help="Rank by this metric (default: the config's train.best_metric)."
    ),
    search: str | None = typer.Option(
        None,
        "--search",
        help="random or tpe: a search on Optuna (pip install 'nncli\\[search]') instead of a grid.",
    ),
    trials: int = typer.Option(
        20, "--trials", help="Search: the study's budget of trials (shared by all processes)."
    ),
    param: list[str] | None = typer.Option(
        None,
        "--param",
        help="Search: path=uniform(a,b) | loguniform(a,b) | int(a,b) | logint(a,b) | choice(v1,v2,...).",
    ),
    pruner: str = typer.Option(
        "median", "--pruner", help="Search: median, asha (successive halving) or none."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="Search: SQLAlchemy URL of the study's database (default: SQLite in the sweep folder).",
    ),
    study: str | None = typer.Option(
        None,
        "--study",
        help="Search: study name in --storage (default: the config's name); processes sharing it work together.",
    ),
    logger: list[str] | None = typer.Option(
        None,
        "--logger",
        help="Every trial also logs to this tracker: tensorboard or mlflow (see nncli train).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and list the combinations; run nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print sweep.json to stdout (tables go to stderr)."),
):
    """Train every combination of the --grid values as its own run, in one sweep folder, and rank them.

    Every combination is validated first. Exit code 0 when at least one trial completed, 1 otherwise.
    With --resume SWEEP_DIR: trials never started or lost start again, stopped ones continue from their
    last checkpoint; finished ones are kept.
    """
    from nncli.core.errors import UserError
    from nncli.runs.sweeps.grid_sweep import resume_sweep, run_sweep

    if search is not None and grid:
        raise UserError("give either --grid values or a --search with --param distributions, not both")
    if search is not None and dry_run:
        raise UserError("--dry-run lists a grid's combinations; a search has none to list before it runs")

    def progress(t):
        best = f"{t.best['metric']} {t.best['value']:.4g}" if t.best else "no metric"
        detail = f": {t.error}" if t.error else ""
        err_console.print(f"  {escape(t.name)}: {t.status}, {best}{escape(detail)}")

    common: dict[str, Any] = {  # the options every kind of sweep takes
        "jobs": jobs,
        "backend": backend.lower(),
        "ray_address": ray_address,
        "runs_dir": runs_dir,
        "sets": set_ or [],
        "metric": metric,
        "on_done": progress,
        "loggers": logger or [],
    }
    try:
        # with --json, stdout is the JSON document alone: whatever a trial or Ray prints meanwhile
        # goes to stderr
        with stdout_kept_for_json(as_json):
            if resume is not None:
                if config is not None or grid:
                    raise UserError(
                        "--resume SWEEP_DIR takes no CONFIG or --grid: they are in its sweep.json"
                    )
                result = resume_sweep(
                    resume,
                    jobs=jobs if jobs != 1 else None,
                    backend=backend.lower() if backend != "local" else None,
                    ray_address=ray_address,
                    on_done=progress,
                )
            elif config is not None and search is not None:
                from nncli.runs.sweeps.search import search_sweep

                result = search_sweep(
                    config,
                    sampler=search.lower(),
                    trials=trials,
                    param_items=param or [],
                    pruner=pruner.lower(),
                    storage=storage,
                    study=study,
                    **common,
                )
            elif config is None or not grid:
                raise UserError(
                    "give a CONFIG and --grid path=v1,v2 or --search tpe --param path=dist(...) (or --resume SWEEP_DIR)"
                )
            else:
                result = run_sweep(config, grid, seeds=seeds, dry_run=dry_run, **common)
    except KeyboardInterrupt:
        # handled here: click would turn it into an Abort; the exit code is the documented 130
        err_console.print(
            "interrupted: running trials were stopped at a checkpoint; continue the sweep with "
            "nncli sweep --resume SWEEP_DIR (sweep.json marks the trials never started as pending)"
        )
        sys.exit(130)
    console = err_console if as_json else out_console
    if dry_run:
        console.print(f"{len(result.trials)} valid combinations:")
        for t in result.trials:
            console.print("  " + escape(t.name) + ": " + escape(" ".join(t.overrides)))
    else:
        console.print(ranked_table(result))
        if result.search:
            for line in search_lines(result):
                console.print(line)
        if result.seeds and len(result.seeds) > 1:
            console.print(combination_table(result))
        console.print(f"sweep folder: {escape(result.folder)}")
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    if not dry_run and not any(t.status == "completed" for t in result.trials):
        sys.exit(1)


def ranked_table(result) -> Table:
    from nncli.runs.listing import fmt, lookup
    from nncli.runs.sweeps.record import rank
    from nncli.runs.sweeps.trial import short_key

    table = Table(title=f"sweep ranked by {result.metric}", title_style="bold")
    table.add_column("#", justify="right")
    table.add_column("trial", no_wrap=True)
    keys = list(result.search["params"]) if result.search else [k for k, _ in result.grid]
    shorts = [short_key(k) for k in keys]
    for k, short in zip(keys, shorts):
        table.add_column(escape(short if shorts.count(short) == 1 else k))
    if result.seeds:
        table.add_column("seed", justify="right", no_wrap=True)
    for col in (f"best {result.metric}", "step", "test acc", "status"):
        table.add_column(escape(col), justify="left" if col == "status" else "right", no_wrap=True)
    shown = [t for t in result.trials if t.status != "requeued"]  # a resumed search ran those again
    for pos, t in enumerate(rank(shown, result.metric), 1):
        best = t.best or {}
        status = t.status if t.status == "completed" else f"[red]{escape(t.status)}[/]"
        row = [str(pos), escape(t.name), *(escape(_short_value(t.params.get(k, "—"))) for k in keys)]
        if result.seeds:
            row.append(str(t.seed))
        row += [
            fmt(best.get("value")),
            fmt(best.get("step")),
            fmt(lookup(t.summary or {}, "test_acc")),
            status,
        ]
        table.add_row(*row)
    return table


def combination_table(result) -> Table:
    """The grid combinations ranked by their mean best metric over the seeds."""
    from nncli.runs.listing import fmt
    from nncli.runs.sweeps.trial import short_key

    table = Table(title=f"combinations over {len(result.seeds)} seeds", title_style="bold")
    table.add_column("#", justify="right")
    keys = [k for k, _ in result.grid]
    for k in keys:
        table.add_column(escape(short_key(k)))
    table.add_column(f"mean best {escape(result.metric)}", justify="right", no_wrap=True)
    table.add_column("± std", justify="right")
    table.add_column("runs", justify="right")
    for pos, c in enumerate(result.combinations(), 1):
        table.add_row(
            str(pos),
            *(escape(c["params"][k]) for k in keys),
            fmt(c["mean"]),
            fmt(c["std"]),
            f"{c['n']}/{c['trials']}",
        )
    return table


def _short_value(text: str) -> str:
    """A sampled float to 4 significant figures (the full value is in sweep.json and the run's config)."""
    try:
        return f"{float(text):.4g}" if "." in text or "e" in text.lower() else text
    except ValueError:
        return text


def search_lines(result) -> list[str]:
    """The study, the best trial, the trial counts and the parameter importances of a search."""
    from nncli.runs.listing import fmt

    s = result.search
    counts = s.get("counts") or {}
    lines = [
        f"study {escape(s['study'])} ({s['sampler']}, pruner {s['pruner']}) in {escape(s['storage'])}: "
        + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    ]
    best = next(
        (t for t in result.trials if t.index == s.get("best_trial") and t.status == "completed"), None
    )
    if best is not None and best.best:
        values = " ".join(f"{k}={v}" for k, v in best.params.items())
        lines.append(
            f"best trial: {escape(best.name)}  {result.metric} {fmt(best.best['value'])}  {escape(values)}"
        )
    if s.get("importances"):
        imp = ", ".join(f"{k} {v:.2f}" for k, v in s["importances"].items())
        lines.append(f"parameter importances: {escape(imp)}")
    return lines
