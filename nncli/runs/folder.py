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

Every whole-file write is atomic: a temp file in the same folder, flush + fsync, ``os.replace``, then
an fsync of the folder, so a crash leaves either the old file or the new one, never half of each.

Reading is tolerant where it must be (a run may still be going, or have been killed mid-write) and
strict where a folder is named as a run: ``is_run_dir`` is the one test of what a run folder is,
``require_run`` / ``read_run`` refuse anything else with a ``RunError``; ``read_metrics`` skips a
torn or corrupt line instead of failing.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import UserError

RUN_FILE = "run.json"
STATUSES = ("running", "completed", "failed", "diverged", "interrupted")


class RunError(UserError):
    """A run folder that cannot be used (not a run, missing checkpoint, changed config)."""


# -- atomic writes ---------------------------------------------------------------------------------
def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_fully(fh, data: bytes) -> None:
    """Write ``data`` to the open binary file ``fh`` and make it durable (flush + fsync).

    Every file nncli writes whole (checkpoints, run.json, summary.json) goes through here, so a
    test can make the disk "fill up" half way through one write.
    """
    fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())


def with_filename(exc: OSError, path: Path | str) -> OSError:
    """``exc`` naming ``path`` (``write(2)`` errors such as ENOSPC carry no file name)."""
    if exc.filename is not None:
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def _unlink_quietly(path: Path | str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_staged(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` (created or truncated) durably; remove it again if that fails.

    Used for files that are renamed into place later (``os.replace``); on any error, a full disk
    or a signal, no partial file is left behind.
    """
    try:
        with open(path, "wb") as fh:
            write_fully(fh, data)
    except BaseException as exc:
        _unlink_quietly(path)
        if isinstance(exc, OSError):
            raise with_filename(exc, path) from None
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and ``os.replace``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise with_filename(exc, path) from None
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; the file gets the mode open() would give it
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            write_fully(fh, data)
        os.replace(tmp, path)
    except BaseException as exc:
        # never leave temp files behind, whatever interrupted us (a full disk, a second Ctrl-C)
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise with_filename(exc, path) from None
        raise
    fsync_dir(path.parent)


def current_umask() -> int:
    """The process's umask, read without changing it where the system says (Linux), else set and reset."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays turned into Python values and NaN/±Inf into None (JSON null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


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


def create_run_dir(runs_dir: Path | str, name: str, now: _dt.datetime | None = None) -> Path:
    """Create and return a new ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-n]`` folder with its checkpoints/."""
    path = new_folder(runs_dir, f"{name}-{stamp(now)}")
    (path / "checkpoints").mkdir()
    return path


def versions() -> dict[str, str]:
    from nncli._version import __version__

    return {"nncli": __version__, "numpy": np.__version__, "python": platform.python_version()}


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


def read_run(path: Path | str) -> dict[str, Any]:
    """run.json of the run at ``path``; RunError when ``path`` is not a run folder or run.json is unreadable."""
    path = require_run(path)
    try:
        data = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path / RUN_FILE}: unreadable run file ({exc})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path / RUN_FILE}: unreadable run file (not a JSON object)")
    return data


def read_json(path: Path | str) -> dict[str, Any]:
    """A JSON object file (run.json, summary.json), or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_config(run: Path | str) -> dict[str, Any]:
    """The run's config.yaml as plain data, or {} when it is missing or unreadable."""
    import yaml

    try:
        data = yaml.safe_load((Path(run) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(path: Path | str) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (``path``: the run folder or the file itself).

    A torn last line (a kill mid-write), a corrupt line or one that is not a JSON object is skipped;
    a missing or unreadable file gives no records.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [rec for _, rec in _records(text.split("\n"))]


def _records(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(line, record) for each line of metrics.jsonl that holds a JSON object; others are skipped."""
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield line, rec


class RunInfo:
    """run.json, rewritten atomically whenever a field changes (status, end time, resumes)."""

    def __init__(self, folder: Path, data: dict[str, Any]):
        self.folder = Path(folder)
        self.data = data

    @classmethod
    def start(cls, folder: Path, *, seed: int, argv: Iterable[str], overrides: list[str],
              data_info: dict[str, Any], extra: dict[str, Any] | None = None) -> "RunInfo":
        info = cls(folder, {
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
        })
        info.save()
        return info

    @classmethod
    def load(cls, folder: Path) -> "RunInfo":
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
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        # one write per line: a kill can tear at most the last line, which readers skip
        try:
            self._fh.write(json.dumps(jsonable(record), allow_nan=False) + "\n")
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
                    pass   # the flush above already reported why


def trim_metrics(path: Path | str, last_step: int) -> None:
    """Prepare metrics.jsonl for a resume from ``last_step``.

    Drops a partial last line (the process died mid-write) and every record after ``last_step``
    (written after the checkpoint we resume from, so they will be written again).
    """
    path = Path(path)
    if not path.exists():
        return
    raw = path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    if not raw.endswith("\n"):
        lines = lines[:-1]  # partial line
    keep = [line for line, rec in _records(lines) if _step(rec) <= last_step]
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def _step(rec: dict[str, Any]) -> float:
    step = rec.get("step", 0)
    return step if isinstance(step, (int, float)) else float("inf")


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
