"""``nncli train CONFIG``: validate everything, then create a run folder and train.

Nothing is written to disk until the config, the data and the model have all been checked, so a
bad input leaves no run folder behind. Exit codes: 0 completed, 1 crashed or a write failed (run.json ``failed``),
2 bad input, 3 diverged (NaN/Inf with ``train.on_nonfinite: stop``), 130 / 143 stopped by
SIGINT / SIGTERM (a checkpoint was written; ``--resume RUN_DIR`` continues exactly).
"""

from __future__ import annotations

import errno
import json
import signal
import sys
from pathlib import Path

import typer

from nncli.cli import app, debugging, err_console
from nncli.core.errors import UserError
from nncli.runs.session import prepare, prepare_resume
from nncli.training.loop import EXIT_DIVERGED

SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


@app.command("train")
def train_cmd(
    config: Path | None = typer.Argument(None, help="YAML config (optional with --resume)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a config value: path=value."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run folders are created."),
    name: str | None = typer.Option(None, "--name", help="Run name (default: the config's name)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this folder."),
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
    threads: int = typer.Option(
        1,
        "--threads",
        min=1,
        help="BLAS threads. Small models run fastest on 1 (thread hand-offs "
        "cost more than their tiny matrix products gain).",
    ),
) -> None:
    """Train a model from a YAML config; write config, metrics, checkpoints and a summary to a run folder.

    Exit codes: 0 completed, 1 crashed or a write failed, e.g. a full disk (status failed; the last good checkpoint is kept), 2 bad input, an unwritable --runs-dir or too little free disk space (nothing written), 3 diverged.

    Diverged: the loss or gradient became NaN/Inf with train.on_nonfinite=stop; the message names the first module whose output or gradient went non-finite, and the last good checkpoint is kept.

    SIGINT / SIGTERM (130 / 143): the current step finishes and a checkpoint is written; continue with --resume RUN_DIR.

    Killed outright (kill -9, the OOM killer): run.json still says running; --resume RUN_DIR continues from the newest complete checkpoint, exactly. See docs/reliability.md.
    """
    overrides = list(set_ or [])
    if resume is not None:
        session = prepare_resume(resume, config, overrides)
    elif config is None:
        raise UserError("give a CONFIG file to train, or --resume RUN_DIR to continue a run")
    else:
        session = prepare(config, overrides, name)
    code = run_session(session, runs_dir, quiet, json_out, curves, threads, loggers=logger or [])
    if code:
        sys.exit(code)


def run_session(
    session,
    runs_dir: Path,
    quiet: bool,
    json_out: bool,
    curves: bool = False,
    threads: int | None = 1,
    loggers: list[str] | None = None,
) -> int:
    """Create (or reopen) the run folder, train with signal handling, write the summary; the exit code."""
    from threadpoolctl import threadpool_limits

    from nncli.runs.trackers import make_trackers

    trackers = make_trackers(loggers or [], session, runs_dir)  # a missing package: refused before any folder
    session.trainer.callbacks.extend(trackers)
    with threadpool_limits(limits=threads, user_api="blas"):
        return _run_session(session, runs_dir, quiet, json_out, curves, trackers)


def _run_session(session, runs_dir: Path, quiet: bool, json_out: bool, curves: bool, trackers=()) -> int:
    from nncli.runs.trackers import finish_trackers
    from nncli.viz.progress import make_progress, results_table

    progress = make_progress(err_console, quiet)
    if progress is not None:
        session.trainer.callbacks.append(progress)
    previous = {}

    def on_signal(signum, frame):
        sig = signal.Signals(signum).name
        if session.trainer.stop_request is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        session.trainer.request_stop(sig)

    # handlers first: a signal while the folder is being created still ends as a clean interrupt
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        session.open(runs_dir)
        result = session.trainer.run()
    except BaseException as exc:
        session.fail(exc)
        session.release()
        finish_trackers(list(trackers), None)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        if isinstance(exc, UserError) or debugging():
            raise
        if isinstance(exc, OSError) and exc.filename is not None and session.folder is not None:
            err_console.print(f"error: {write_failure(exc, session)}", markup=False, soft_wrap=True)
            return 1
        err_console.print(
            f"error: training crashed: {type(exc).__name__}: {exc} (run folder "
            f"{session.folder}; --debug shows the traceback)",
            markup=False,
            soft_wrap=True,
        )
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if hasattr(progress, "close"):
            progress.close()
    try:
        summary = session.finish(result)
        for problem in finish_trackers(list(trackers), summary):
            err_console.print(f"warning: tracker: {problem}", markup=False, soft_wrap=True)
    except OSError as exc:  # summary.json or run.json on a disk that just filled up
        if exc.filename is None or debugging():
            raise
        err_console.print(f"error: {write_failure(exc, session)}", markup=False, soft_wrap=True)
        return 1
    finally:
        session.release()
    if curves:  # after summary.json, so a slow or failing drawing never costs the run its results
        _draw_curves(session.folder)
    if not quiet:
        err_console.print(results_table(summary, session.folder))
        err_console.print(f"run folder: {session.folder}", markup=False, soft_wrap=True)
    if result.status == "diverged":  # said even with --quiet: it is why the exit code is 3
        kept = (session.folder / "checkpoints" / "last.safetensors").exists()
        err_console.print(
            f"diverged: {result.reason}; "
            + ("the last good checkpoint is kept" if kept else "no checkpoint had been written yet"),
            markup=False,
            soft_wrap=True,
        )
    elif result.status == "interrupted" and not quiet:
        err_console.print(
            f"interrupted by {result.reason}; continue with nncli train --resume {session.folder}",
            markup=False,
            soft_wrap=True,
        )
    if json_out:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    if result.status == "diverged":
        return EXIT_DIVERGED
    if result.status == "interrupted":
        return SIGNAL_EXIT.get(result.reason, 130)
    return 0


def write_failure(exc: OSError, session) -> str:
    """One line for a write that failed mid-run (full disk, quota, read-only): what, and what is kept."""
    from nncli.runs.checkpoint import CheckpointError, load_checkpoint

    folder = session.folder
    try:
        kept = f"the last good checkpoint (step {load_checkpoint(folder / 'checkpoints', 'last').state['step']}) is kept"
    except (CheckpointError, KeyError, OSError):
        kept = "no checkpoint had been written yet"
    full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    return (
        f"cannot write {exc.filename}: {exc.strerror or exc}; training stopped at step "
        f"{session.trainer.state.step}; {kept}; {'make room' if full else 'once it can be written'}, "
        f"then continue with nncli train --resume {folder}"
    )


def _draw_curves(folder) -> None:
    """curves.png in the run folder when matplotlib is installed; a failure here is never the run's."""
    try:
        from nncli.viz.curves import write_curves

        write_curves(folder)
    except Exception:
        pass
