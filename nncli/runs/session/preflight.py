"""Disk checks made before training starts: can run folders be created, is there room for a run.

What can be known in advance is refused as a ``RunError`` (exit 2, nothing written): a runs folder
that cannot be created or written, or a disk with less free space than the run needs. A disk that
fills up later is reported when a write fails (``nncli.cli.train``), and the transaction in
``nncli.runs.checkpoint`` keeps the previous checkpoint loadable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from nncli.runs.folder.run_dir import RunError

#: per-file header and metadata allowance of a safetensors file (JSON header, training state)
HEADER_BYTES = 64 * 1024
#: one metrics.jsonl line, generously
METRICS_LINE_BYTES = 400
#: config.yaml, run.json, summary.json and the folder entries
FIXED_BYTES = 256 * 1024


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def checkpoint_bytes(trainer) -> int:
    """Size of one checkpoint (weights file + sidecar) of ``trainer``'s model and optimiser."""
    weights, arrays, _ = trainer.checkpoint_state()
    tensors = sum(np.asarray(a).nbytes for a in weights.values())
    tensors += sum(np.asarray(a).nbytes for a in arrays.values())
    es = trainer.tcfg.early_stopping is not None and not any(k.startswith("es_best/") for k in arrays)
    if es:  # early stopping adds a copy of the weights to the sidecar after its first evaluation
        tensors += sum(np.asarray(a).nbytes for a in weights.values())
    return tensors + 2 * HEADER_BYTES


def bytes_needed(trainer, new_run: bool) -> tuple[int, int]:
    """(bytes a run needs at most, bytes of one checkpoint).

    ``last`` and ``best`` each exist once and, while one is saved, twice (old + staged), so the
    peak is four checkpoints for a new run; a resumed run already holds two of them.
    """
    ckpt = checkpoint_bytes(trainer)
    t = trainer.tcfg
    steps_left = max(trainer.total_steps - trainer.state.step, 0)
    evals = steps_left // t.eval_every if t.eval_every else steps_left // trainer.steps_per_epoch
    lines = steps_left // t.log_every + evals + 2
    return (4 if new_run else 2) * ckpt + lines * METRICS_LINE_BYTES + FIXED_BYTES, ckpt


def existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(folder: Path, need: int, ckpt: int) -> None:
    """RunError when the disk holding ``folder`` has less than ``need`` bytes free."""
    try:
        free = shutil.disk_usage(existing_ancestor(folder)).free
    except OSError:
        return  # cannot tell (an odd filesystem): the write errors will say it if it comes to that
    if free < need:
        raise RunError(
            f"{folder}: not enough free disk space: {human(free)} free, this run needs about "
            f"{human(need)} (checkpoints of {human(ckpt)}, each kept while its next "
            f"version is written); free some space or choose another --runs-dir"
        )


def check_runs_dir(runs_dir: Path) -> None:
    """Create ``runs_dir`` if needed; RunError naming it when it cannot hold new run folders."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunError(
            f"{runs_dir}: the runs folder exists but is not a folder; choose another with --runs-dir"
        ) from None
    except OSError as exc:
        raise RunError(
            f"{runs_dir}: cannot create the runs folder ({exc.strerror}); choose another with --runs-dir"
        ) from None
    if not runs_dir.is_dir():
        raise RunError(
            f"{runs_dir}: the runs folder exists but is not a folder; choose another with --runs-dir"
        )


def not_writable(runs_dir: Path, exc: OSError) -> RunError:
    """The error for a run folder that could not be created or written inside ``runs_dir``."""
    return RunError(
        f"{runs_dir}: cannot write a run folder there ({exc.strerror or exc}); "
        f"check its permissions and free space, or choose another with --runs-dir"
    )


def _open_lock(folder: Path, create: bool) -> int | None:
    """A descriptor of ``<folder>/.lock`` opened without following a link (None: no lock file).

    A ``.lock`` that is a symbolic link, a FIFO or anything but a regular file is refused: the
    lock file gets this process's PID written into it, and that must never land outside the run.
    """
    import stat

    from nncli.runs.atomic import open_for_writing

    path = Path(folder) / ".lock"
    try:
        flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
        fd = open_for_writing(path, flags | os.O_NONBLOCK)
    except FileNotFoundError:
        if create:
            raise RunError(f"{folder}: no such run folder") from None
        return None
    except OSError as exc:
        raise RunError(f"{path}: cannot open the run's lock file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunError(
            f"{path}: the run's lock file is not a regular file; this run folder was "
            f"modified by something other than nncli"
        )
    return fd


def _refuse_busy(folder: Path, fd: int) -> None:
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    holder = holder if holder.isdigit() else ""
    raise RunError(
        f"{folder}: another process{f' (pid {holder})' if holder else ''} is training "
        f"this run right now; wait for it to end, or stop it, before resuming"
    )


def lock_run(folder: Path):
    """Hold an exclusive lock on ``folder`` while this process trains it; the open lock file.

    An advisory ``flock`` on ``<run>/.lock``: the kernel drops it when the process ends, however it
    ends (kill -9 included), so a run whose run.json still says "running" can be resumed exactly
    when no process is training it any more. Where ``fcntl`` is missing (Windows) nothing is locked.
    The file is opened without following links and written (the PID) only once the lock is held.
    """
    try:
        import fcntl
    except ImportError:
        return None
    fd = _open_lock(folder, create=True)
    if fd is None:  # only without create; said here so the type is plain int below
        raise RunError(f"{folder}: no such run folder")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            _refuse_busy(folder, fd)
        finally:
            os.close(fd)
    fh = os.fdopen(fd, "r+")
    fh.truncate(0)
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _held(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def check_not_training(folder: Path) -> None:
    """RunError when a live process holds ``folder``'s run lock; writes nothing."""
    if not is_training(folder):
        return
    fd = _open_lock(folder, create=False)
    if fd is None:  # the lock file went away since is_training looked: nobody holds it
        return
    try:
        _refuse_busy(folder, fd)
    finally:
        os.close(fd)


def is_training(folder: Path) -> bool:
    """Whether a live process holds ``folder``'s run lock (so a "running" status is current)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return True  # cannot tell: trust run.json
    try:
        fd = _open_lock(folder, create=False)
    except RunError:  # a lock file nncli did not make, or cannot open: no live run holds it
        return False
    if fd is None:
        return False
    try:
        return _held(fd)
    finally:
        os.close(fd)


def check_writable(folder: Path) -> None:
    """RunError unless a file can be created in ``folder`` (modes alone do not tell: root,
    read-only mounts, immutable folders)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise RunError(
            f"{folder}: cannot write in this run folder ({exc.strerror or exc}); "
            f"a resumed run writes its metrics and checkpoints there"
        ) from None
