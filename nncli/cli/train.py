"""``nncli train CONFIG``: validate everything, then create a run folder and train.

Nothing is written to disk until the config, the data and the model have all been checked, so a
bad input leaves no run folder behind. Exit codes: 0 completed, 1 crashed or a write failed (run.json ``failed``),
2 bad input, 3 diverged (NaN/Inf with ``train.on_nonfinite: stop``), 130 / 143 stopped by
SIGINT / SIGTERM (a checkpoint was written; ``--resume RUN_DIR`` continues exactly).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from nncli.cli import app, debugging, err_console
from nncli.cli.textout import stdout_kept_for_json
from nncli.core.errors import UserError
from nncli.runs.train_run import Stopped, TrainOutcome, stop_at_once, train


@app.command("train")
def train_cmd(
    config: Path | None = typer.Argument(None, help="YAML config (optional with --resume)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a config value: path=value."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run folders are created."),
    name: str | None = typer.Option(None, "--name", help="Run name (default: the config's name)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Continue the run in this folder; with --set train.steps=N (or train.epochs) a larger budget extends it.",
    ),
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        metavar="RUN[:best|last]",
        help="Start from another run's weights (fine-tuning); RUN alone: its best checkpoint, else last.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print summary.json to stdout."),
    curves: bool = typer.Option(
        True,
        "--curves/--no-curves",
        help="Draw curves.png at the end when matplotlib is installed (about 1 s).",
    ),
    logger: list[str] | None = typer.Option(
        None,
        "--logger",
        help="Also log to a tracker: tensorboard (event files in the run folder) or mlflow (MLFLOW_TRACKING_URI, "
        "else SQLite in --runs-dir); repeat for several.",
    ),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the fully resolved config (defaults, overrides) and exit."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Check config, data and model; print examples, steps, parameters and memory; create no run folder.",
    ),
    threads: str = typer.Option(
        "auto",
        "--threads",
        help="BLAS and kernel threads: a number, or auto: 1 for small models (thread hand-offs cost "
        "more than their tiny products gain), every core from 150 MFLOP per step.",
    ),
) -> None:
    """Train a model from a YAML config; write config, metrics, checkpoints and a summary to a run folder.

    Exit codes: 0 completed, 1 crashed or a write failed, e.g. a full disk (status failed; the last good checkpoint is kept), 2 bad input, an unwritable --runs-dir or too little free disk space (nothing written), 3 diverged.

    Diverged: the loss or gradient became NaN/Inf with train.on_nonfinite=stop; the message names the first module whose output or gradient went non-finite, and the last good checkpoint is kept.

    SIGINT / SIGTERM (130 / 143): the current step finishes and a checkpoint is written; continue with --resume RUN_DIR.

    Killed outright (kill -9, the OOM killer): run.json still says running; --resume RUN_DIR continues from the newest complete checkpoint, exactly. See docs/reliability.md.
    """
    n_threads = thread_count(threads)
    if print_config or dry_run:
        _plan(config, set_ or [], name, resume, print_config, json_out, init_from)
        return
    from nncli.viz.progress import make_progress

    progress = make_progress(err_console, quiet)
    outcome = None
    # start-up (config, data, model) and the report: a signal stops at once (130 / 143); nothing has
    # been written before training, and the run is saved before the report
    try:
        with stop_at_once():
            try:
                # with --json, stdout is the summary alone: a tracker's messages meanwhile go to stderr
                with stdout_kept_for_json(json_out):
                    outcome = train(
                        config,
                        overrides=set_ or [],
                        runs_dir=runs_dir,
                        name=name,
                        resume=resume,
                        init_from=init_from,
                        callbacks=[progress] if progress is not None else [],
                        loggers=logger or [],
                        threads=n_threads,
                        raise_errors=debugging(),
                    )
            finally:
                if hasattr(progress, "close"):
                    progress.close()
            render(outcome, quiet, json_out, curves)
    except Stopped as exc:
        if outcome is None:
            err_console.print(
                f"interrupted by {exc.reason} before training started; nothing was written",
                markup=False,
                soft_wrap=True,
            )
        sys.exit(exc.code)
    if outcome.exit_code:
        sys.exit(outcome.exit_code)


def thread_count(value: str) -> int | str:
    """``--threads``: "auto" or a whole number ≥ 1 (a UserError otherwise)."""
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UserError(f"--threads: expected a number of threads (1, 2, ...) or auto, got {value!r}")


def _plan(config, overrides, name, resume, print_config: bool, json_out: bool, init_from=None) -> None:
    from nncli.core.errors import UserError
    from nncli.runs.plan import dry_run, resolved_config

    flag = "--print-config" if print_config else "--dry-run"
    if resume is not None or config is None:
        raise UserError(f"{flag} needs a CONFIG file (and cannot be combined with --resume)")
    if print_config:
        sys.stdout.write(resolved_config(config, overrides, name))
        return
    plan = dry_run(config, overrides, name, init_from=init_from)
    if json_out:
        sys.stdout.write(json.dumps(plan) + "\n")
        return
    ex, mem = plan["examples"], plan["memory_bytes"]
    lines = [
        f"{config}: valid; nothing was written (--dry-run)",
        f"examples  train {ex['train']}, val {ex['val']}, test {ex['test']} (batch {plan['batch_size']})",
        f"steps     {plan['steps']} ({plan['steps_per_epoch']} per epoch)",
        f"params    {plan['parameters']:,}",
        f"memory    ≤ {_mib(mem['total'])} (parameters, gradients and optimiser state "
        f"{_mib(mem['parameters'])}, one batch {_mib(mem['activations'])}, data {_mib(mem['data'])})",
    ]
    for line in lines:
        err_console.print(line, markup=False, soft_wrap=True)


def _mib(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def render(outcome: TrainOutcome, quiet: bool, json_out: bool, curves: bool) -> None:
    """What ``nncli train`` prints about a finished session (stderr; the summary on stdout with --json)."""
    folder = outcome.run_dir
    if outcome.status == "failed":
        err = outcome.exception
        line = outcome.error or (
            f"training crashed: {type(err).__name__}: {err} (run folder {folder}; --debug shows the traceback)"
        )
        err_console.print(f"error: {line}", markup=False, soft_wrap=True)
        return
    if outcome.summary is None:  # stopped at once (a second signal, or during the final evaluation)
        if outcome.status == "interrupted" and folder is not None:
            err_console.print(
                f"interrupted by {outcome.reason}; continue with nncli train --resume {folder}",
                markup=False,
                soft_wrap=True,
            )
        return
    for warning in outcome.warnings:
        err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
    if curves:  # after summary.json, so a slow or failing drawing never costs the run its results
        _draw_curves(folder)
    if not quiet:
        from nncli.viz.progress import results_table

        err_console.print(results_table(outcome.summary, folder))
        err_console.print(f"run folder: {folder}", markup=False, soft_wrap=True)
    if outcome.status == "diverged":  # said even with --quiet: it is why the exit code is 3
        step = (outcome.summary or {}).get("checkpoint_step")
        kept = "no checkpoint had been written yet"
        if outcome.checkpoint_kept:
            kept = "the last good checkpoint " + (f"(step {step}) " if step is not None else "") + "is kept"
        err_console.print(
            f"diverged: {outcome.reason}; {kept}",
            markup=False,
            soft_wrap=True,
        )
    elif outcome.status == "interrupted" and not quiet:
        err_console.print(
            f"interrupted by {outcome.reason}; continue with nncli train --resume {folder}",
            markup=False,
            soft_wrap=True,
        )
    if json_out:
        sys.stdout.write(json.dumps(outcome.summary) + "\n")
        sys.stdout.flush()


def _draw_curves(folder) -> None:
    """curves.png in the run folder when matplotlib is installed; a failure here is never the run's."""
    try:
        from nncli.viz.curves import write_curves

        write_curves(folder)
    except Exception:
        pass
