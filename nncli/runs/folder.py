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
    .lock                held (flock) by the process training the run; see ``nncli.runs.preflight.lock_run``

Every whole-file write is atomic (``nncli.runs.atomic``): a crash leaves either the old file or the
new one, never half of each.

Reading is tolerant where it must be (a run may still be going, or have been killed mid-write) and
strict where a folder is named as a run: ``is_run_dir`` is the one test of what a run folder is,
``require_run`` / ``read_run`` refuse anything else with a ``RunError``; ``read_metrics`` skips a
torn line quietly and a damaged one with a warning, ``trim_metrics`` (a resume) refuses a damaged one.
A run folder may come from someone else: every file is read only if it is a regular file (no link
followed, no FIFO waited on), and run.json's fields are type-checked (``check_run_info``).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import platform
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import UserError
from nncli.runs.atomic import (
    NOFOLLOW,
    atomic_write_json,
    atomic_write_text,
    fsync_dir,
    jsonable,
    open_for_writing,
    with_filename,
)

RUN_FILE = "run.json"
STATUSES = ("running", "completed", "failed", "diverged", "interrupted")


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


def versions() -> dict[str, str]:
    from nncli._version import __version__

    return {"nncli": __version__, "numpy": np.__version__, "python": platform.python_version()}


#: the files nncli writes directly in a run folder (checkpoints/ holds the checkpoint files)
WRITTEN_FILES = (
    "config.yaml",
    RUN_FILE,
    "metrics.jsonl",
    "watch.jsonl",
    "summary.json",
    ".lock",
    "curves.png",
)


def check_own_files(folder: Path | str) -> None:
    """RunError unless every file nncli writes in ``folder`` is a regular file inside it (or absent).

    A run folder may come from someone else: a symbolic link (``metrics.jsonl`` → ``~/.bashrc``,
    ``checkpoints`` → ``/etc``) or a FIFO planted in it must be refused before anything is written,
    not followed. Checked before a resume; the writers open with ``O_NOFOLLOW`` as well.
    """
    import stat

    folder = Path(folder)
    ckpts = folder / "checkpoints"
    paths = [folder / n for n in WRITTEN_FILES] + [ckpts]
    try:
        if stat.S_ISDIR(os.lstat(ckpts).st_mode):
            paths += sorted(ckpts.iterdir())
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise RunError(f"{ckpts}: cannot read the checkpoints folder ({exc.strerror})") from None
    for path in paths:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise RunError(f"{path}: cannot check this file of the run ({exc.strerror})") from None
        if stat.S_ISLNK(mode):
            raise RunError(
                f"{path}: is a symbolic link; a run folder must hold its own files "
                f"(nncli never writes through a link)"
            )
        want_dir = path == ckpts
        if (stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)) is False:
            kind = "a folder" if want_dir else "a regular file"
            raise RunError(
                f"{path}: is not {kind}; this run folder was modified by something other than nncli"
            )


def holding_run(path: Path) -> Path | None:
    """The run folder ``path`` lies in (the nearest ancestor that is one), or None."""
    for folder in path.parents:
        if (folder / "config.yaml").is_file() and (
            (folder / RUN_FILE).is_file() or (folder / "metrics.jsonl").is_file()
        ):
            return folder
    return None


def check_output(out: Path | str, *, force: bool, allowed: Callable[[Path], bool], allowed_text: str) -> Path:
    """``out`` as an absolute path once it is safe to write there; RunError (exit 2) otherwise.

    Refused: a path inside a run folder that ``allowed(path relative to the run)`` rejects (so an
    export or a plot can never overwrite a checkpoint or config.yaml of a run), a path that reaches
    into a run folder through a symbolic link, or that passes a link inside one, and an existing
    file unless ``force``. Checked both as written and with every link resolved.
    """
    target = Path(os.path.abspath(out))
    for path in dict.fromkeys([target, target.resolve()]):
        run = holding_run(path)
        if run is None:
            continue
        rel = path.relative_to(run)
        if not allowed(rel):
            raise RunError(
                f"{out}: inside the run folder {run}; nncli writes there only {allowed_text}; "
                f"choose a path outside the run folder"
            )
        cur = run
        for part in rel.parts:
            cur = cur / part
            if os.path.islink(cur):
                raise RunError(f"{cur}: a symbolic link inside a run folder; nncli does not write through it")
    if os.path.isdir(target):
        raise RunError(f"{out}: is a folder; give a file name")
    if os.path.lexists(target) and not force:
        raise RunError(f"{out}: already exists; pass --force to replace it")
    return target


# -- reading run folders (tolerant: a run may be half written, still going, or killed) ---------------
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


# -- reading a run folder: its files are untrusted input -------------------------------------------
#: the largest run.json / summary.json / config.yaml nncli reads (they hold a few KiB normally)
SMALL_FILE_LIMIT = 64 * 2**20


def read_file(path: Path | str, limit: int | None = SMALL_FILE_LIMIT) -> bytes:
    """The bytes of the regular file ``path``; RunError naming it for anything else.

    A run folder may come from someone else, so a link, a FIFO or a device planted in place of one
    of its files is refused rather than followed, waited on or read without end. FileNotFoundError
    is left to the caller (a missing file often just means "not written yet").
    """
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = (
            "a symbolic link, which nncli does not follow in a run folder"
            if exc.errno == errno.ELOOP
            else f"cannot read it ({exc.strerror})"
        )
        raise RunError(f"{path}: {why}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunError(f"{path}: not a regular file")
        if limit is not None and st.st_size > limit:
            raise RunError(f"{path}: {st.st_size} bytes, more than the {limit} such a file can hold")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(st.st_size if limit is None else limit + 1)
    except OSError as exc:
        raise RunError(f"{path}: cannot read it ({exc.strerror})") from None
    finally:
        os.close(fd)


def read_json_object(path: Path | str) -> dict[str, Any]:
    """The JSON object in ``path``; RunError naming the file when it is not one."""
    raw = read_file(path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RunError(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise RunError(f"{path}: nested too deeply to be an nncli file") from None
    except ValueError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: run.json fields nncli reads back, and what each must be when present
RUN_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "status": ("one of " + ", ".join(STATUSES), lambda v: v in STATUSES),
    "seed": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "name": ("a string", lambda v: isinstance(v, str)),
    "dtype": ("a string", lambda v: isinstance(v, str)),
    "data_base_dir": ("a string", lambda v: isinstance(v, str) and "\0" not in v),
    "config_sha256": ("a string", lambda v: isinstance(v, str)),
    "command": ("a list of strings", _is_str_list),
    "overrides": ("a list of strings", _is_str_list),
    "resumes": ("a list of objects", lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v)),
    "extensions": (
        "a list of objects",
        lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    ),
    "init_from": (
        "an object with the strings run, checkpoint (best or last) and weights_sha256",
        lambda v: (
            isinstance(v, dict)
            and all(
                isinstance(v.get(k), str) and "\0" not in v[k]
                for k in ("run", "checkpoint", "weights_sha256")
            )
            and v["checkpoint"] in ("best", "last")
        ),
    ),
    "data": (
        "an object whose standardization holds 'mean' and 'std', finite arrays of one shape (std > 0)",
        lambda v: isinstance(v, dict) and _standardization_ok(v.get("standardization")),
    ),
}


def _standardization_ok(stats: Any) -> bool:
    if stats is None:
        return True
    if not isinstance(stats, dict):
        return False
    try:
        mean, std = (np.asarray(stats[k], dtype=np.float64) for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError):
        return False
    return mean.shape == std.shape and bool(
        np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    )


def check_run_info(data: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """``data`` (run.json's contents) after checking the type of every field nncli reads back."""
    for key, (want, ok) in RUN_FIELDS.items():
        if key in data and not ok(data[key]):
            raise RunError(
                f"{path}: '{key}' must be {want}, got {json.dumps(data[key])[:60]}"
                f"; the run folder was damaged or edited"
            )
    return data


def read_run(path: Path | str) -> dict[str, Any]:
    """run.json of the run at ``path``, its fields type-checked; RunError when ``path`` is not a run
    folder or run.json is unreadable or damaged (the message names the file)."""
    path = require_run(path)
    try:
        return check_run_info(read_json_object(path / RUN_FILE), path / RUN_FILE)
    except FileNotFoundError:
        raise RunError(f"{path}: not a run folder (expected {RUN_FILE} and config.yaml inside)") from None


def _quiet(msg: str) -> None:
    pass


def read_json(path: Path | str, warn: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """A JSON object file (run.json, summary.json), or {} when it is missing; {} and a ``warn`` line
    when it is unreadable or not an object."""
    try:
        return read_json_object(path)
    except FileNotFoundError:
        return {}
    except RunError as exc:
        warn(f"{exc.message}; shown as blank")
        return {}


def read_config(run: Path | str, warn: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """The run's config.yaml as plain data, or {} when it is missing; {} and a ``warn`` line when it
    cannot be read."""
    import yaml

    path = Path(run) / "config.yaml"
    try:
        data = yaml.safe_load(read_file(path).decode("utf-8"))
    except FileNotFoundError:
        return {}
    except RunError as exc:
        warn(f"{exc.message}; shown as blank")
        return {}
    except (UnicodeDecodeError, ValueError, RecursionError, yaml.YAMLError):
        warn(f"{path}: not a readable config; shown as blank")
        return {}
    return data if isinstance(data, dict) else {}


def metric_lines(path: Path | str, on_bad: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl, in order.

    A torn last line (no newline: the process died mid-write, or is writing it now) is skipped
    quietly. Any other line that is not a JSON object with a whole ``step`` is damage: ``on_bad``
    gets one message naming ``file:line`` and the line is skipped; without ``on_bad`` it is a
    RunError (exit 2).
    """
    try:
        raw = read_file(path, limit=None)
    except FileNotFoundError:
        return []
    lines = raw.split(b"\n")
    lines.pop()  # b"" after the last newline, or a torn last line
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
            why = None if isinstance(rec, dict) else f"expected a JSON object, got {type(rec).__name__}"
        except (UnicodeDecodeError, ValueError, RecursionError):
            why = "not a JSON line"
        if why is None:
            step = rec.get("step", 0)
            if not isinstance(step, int) or isinstance(step, bool) or step < 0:
                why = "'step' must be a whole number ≥ 0"
        if why is None:
            out.append(rec)
            continue
        msg = f"{path}:{n}: {why}"
        if on_bad is None:
            raise RunError(f"{msg}; the metrics of this run were damaged or edited")
        on_bad(msg)
    return out


def read_metrics(path: Path | str, warn: Callable[[str], None] = _quiet) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (``path``: the run folder or the file itself).

    A torn last line (a kill mid-write) is skipped; a damaged line (not a JSON object with a whole
    step) is skipped with a ``warn`` line naming it; a missing file gives no records, an unreadable
    one (a link, a FIFO) none and a warning.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    try:
        return metric_lines(path, on_bad=lambda msg: warn(f"{msg}; line skipped"))
    except RunError as exc:
        warn(f"{exc.message}; no metrics shown")
        return []


class RunInfo:
    """run.json, rewritten atomically whenever a field changes (status, end time, resumes)."""

    def __init__(self, folder: Path, data: dict[str, Any]):
        self.folder = Path(folder)
        self.data = data

    @classmethod
    def start(
        cls,
        folder: Path,
        *,
        seed: int,
        argv: Iterable[str],
        overrides: list[str],
        data_info: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> RunInfo:
        info = cls(
            folder,
            {
                "status": "running",
                "seed": seed,
                "versions": versions(),
                "started": iso(utc_now()),
                "ended": None,
                "command": list(argv),
                "overrides": list(overrides),
                "data": data_info,
                "resumes": [],
                **(extra or {}),
            },
        )
        info.save()
        return info

    @classmethod
    def load(cls, folder: Path) -> RunInfo:
        return cls(folder, read_run(folder))

    def save(self) -> None:
        atomic_write_json(self.folder / RUN_FILE, self.data)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def finish(self, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self.update(status=status, ended=iso(utc_now()), **fields)


# -- metrics.jsonl ---------------------------------------------------------------------------------
class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl, flushed per line (non-finite → null)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        # open for the run's lifetime, closed by close()
        self._fh = open(self.path, "a", encoding="utf-8", opener=open_for_writing)  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        try:  # plain Python values go straight out; numpy values and NaN/Inf through ``jsonable``
            line = json.dumps(record, allow_nan=False)
        except (TypeError, ValueError):
            line = json.dumps(jsonable(record), allow_nan=False)
        # one write per line: a kill can tear at most the last line, which readers skip
        try:
            self._fh.write(line + "\n")
            self._fh.flush()
        except OSError as exc:
            raise with_filename(exc, self.path) from None

    def close(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as exc:
                raise with_filename(exc, self.path) from None
            finally:
                try:
                    self._fh.close()
                except OSError:
                    pass  # the flush above already reported why


def trim_metrics(path: Path | str, last_step: int) -> None:
    """Prepare metrics.jsonl for a resume from ``last_step``.

    Drops a partial last line (the process died mid-write) and every record after ``last_step``
    (written after the checkpoint we resume from, so they will be written again). A damaged line
    anywhere else is a RunError naming it: a resume never rewrites a file it cannot read.
    """
    path = Path(path)
    keep = [rec for rec in metric_lines(path) if rec.get("step", 0) <= last_step]
    if keep or os.path.lexists(path):
        atomic_write_text(path, "".join(json.dumps(rec, allow_nan=False) + "\n" for rec in keep))


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]


class RunRecorder:
    """Trainer callback that writes metrics.jsonl lines and the ``last`` / ``best`` checkpoints.

    ``stamp`` (e.g. the resolved config's hash) is stored in every checkpoint's state, so a resume
    can check that the run's config.yaml is still the one the checkpoint was made with.
    """

    def __init__(self, folder: Path | str, stamp: dict[str, Any]):
        self.folder = Path(folder)
        self.ckpt_dir = self.folder / "checkpoints"
        self.stamp = dict(stamp)
        self.metrics = MetricsLog(self.folder / "metrics.jsonl")

    def on_log(self, trainer, record) -> None:
        self.metrics.write(record)

    def on_eval(self, trainer, record, improved) -> None:
        self.metrics.write(record)

    def on_checkpoint(self, trainer, best: bool) -> None:
        from nncli.runs.checkpoint import save_checkpoint

        weights, arrays, state = trainer.checkpoint_state()
        state.update(self.stamp)
        # best first: if the process dies between the two saves, the resume starts before this
        # step and saves the same best again, so best and last never disagree with a straight run
        if best:
            save_checkpoint(self.ckpt_dir, "best", weights, arrays, state)
        save_checkpoint(self.ckpt_dir, "last", weights, arrays, state)

    def on_end(self, trainer, result) -> None:
        self.metrics.close()
