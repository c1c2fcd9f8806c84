"""Run folders: ``runs/<name>-<UTC timestamp>/`` with the resolved config, metrics and run facts.

Layout of one run::

    config.yaml          the fully resolved config (defaults filled, --set overrides applied)
    run.json             status (running/completed/failed/diverged/interrupted), seed, versions,
                         times, command line, overrides, data info (split sizes, standardisation stats)
    metrics.jsonl        one JSON object per line, flushed: train rows (train_loss: mean over
                         log_every steps) and eval rows (train_loss_since_eval, val_loss, val_acc)
    summary.json         final / best / test metrics, parameter count, wall time, steps
    checkpoints/         last.safetensors, best.safetensors and their ``.state.safetensors`` sidecars
                         (hidden ``.*.pending`` files only while a save is in progress or was cut
                         short; see ``nncli.runs.checkpoint``)
    .lock                held (flock) by the process training the run; see ``nncli.runs.session.preflight.lock_run``

Every whole-file write is atomic (``nncli.runs.atomic``): a crash leaves either the old file or the
new one, never half of each.

``is_run_dir`` is the one test of what a run folder is; ``require_run`` refuses anything else with
a ``RunError``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from nncli.core.errors import UserError
from nncli.runs.atomic import fsync_dir

RUN_FILE = "run.json"


class RunError(UserError):
    """A run folder that cannot be used (not a run, missing checkpoint, changed config)."""


# -- run folders -----------------------------------------------------------------------------------
def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_folder(parent: Path | str, stem: str, what: str = "run") -> Path:
    """Create and return a new ``<parent>/<stem>[-n]`` folder; never reuses one.

    ``os.mkdir`` fails if the folder exists, so two folders made in the same second get ``-1``, ``-2``…
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        path = parent / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"{parent}: could not find a free {what} folder name for {stem}")


def stamp(now: _dt.datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS`` (UTC), the suffix of run and sweep folder names."""
    return (now or utc_now()).strftime("%Y%m%d-%H%M%S")


#: suffix of the hidden folder a new run is assembled in before it gets its name
CREATING = ".creating"


def create_run_dir(
    runs_dir: Path | str,
    name: str,
    now: _dt.datetime | None = None,
    populate: Callable[[Path, str], None] | None = None,
) -> Path:
    """Create and return a new ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-n]`` folder; never reuses one.

    The folder is assembled under a hidden name (``checkpoints/``, then ``populate(folder, final
    name)`` writes its first files) and renamed into place in one step, so a run folder is never
    seen half made: a kill -9 during creation leaves at most a hidden ``.*.creating`` folder, which
    ``nncli runs`` points out. Two runs started in the same second get ``-1``, ``-2``…
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    when = stamp(now)
    stage = runs_dir / f".{name}-{when}.{uuid.uuid4().hex[:8]}{CREATING}"
    stage.mkdir()
    try:
        (stage / "checkpoints").mkdir()
        for n in range(10_000):
            final = f"{name}-{when}" if n == 0 else f"{name}-{when}-{n}"
            path = runs_dir / final
            if os.path.lexists(path):
                continue
            if populate is not None:
                populate(stage, final)
            try:
                os.rename(stage, path)  # fails when another run took the name meanwhile
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    continue
                raise
            fsync_dir(runs_dir)
            return path
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    raise RunError(f"{runs_dir}: could not find a free run folder name for {name}-{when}")


def is_run_dir(path: Path | str) -> bool:
    """Whether ``path`` is a run folder: a folder holding run.json and config.yaml."""
    path = Path(path)
    return path.is_dir() and (path / RUN_FILE).is_file() and (path / "config.yaml").is_file()


def require_run(path: Path | str) -> Path:
    """``path`` as a Path, or RunError saying what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run folder")
    if not is_run_dir(path):
        raise RunError(f"{path}: not a run folder (expected {RUN_FILE} and config.yaml inside)")
    return path
