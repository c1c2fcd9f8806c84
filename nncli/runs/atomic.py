"""Atomic whole-file writes: a temp file in the same folder, flush + fsync, ``os.replace``, then an
fsync of the folder, so a crash leaves either the old file or the new one, never half of each.

Files are opened without following a symbolic link in the last component (``NOFOLLOW``), with the
user's umask, and every OSError names its file. ``jsonable`` turns numpy values and NaN/±Inf into
what JSON can hold.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


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


#: ``os.open`` flags that never follow a symbolic link in the last component of a path
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_for_writing(path: Path | str, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags | O_NOFOLLOW)``: a symbolic link at ``path`` is refused, never followed.

    Run folders may come from someone else; a link planted in one (``.lock`` → ``~/.bashrc``) must
    not make nncli write outside the folder. Raises ``OSError`` naming the path (ELOOP: a link).
    """
    try:
        return os.open(path, flags | NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(
                exc.errno, "a symbolic link; nncli does not write through links in a run folder", str(path)
            ) from None
        raise with_filename(exc, path) from None


def write_staged(path: Path | str, data: bytes) -> None:
    """Write ``data`` to the new file ``path`` durably; remove it again if that fails.

    Used for files that are renamed into place later (``os.replace``); on any error, a full disk
    or a signal, no partial file is left behind. ``path`` must not exist (callers remove stale
    staged files first), so nothing planted there, a link included, is ever written through.
    """
    fh = open(path, "wb", opener=lambda p, flags: open_for_writing(p, flags | os.O_EXCL))  # noqa: SIM115 (closed below)
    try:
        with fh:
            write_fully(fh, data)
    except BaseException as exc:
        _unlink_quietly(path)
        if isinstance(exc, OSError):
            raise with_filename(exc, path) from None
        raise


def atomic_write_bytes(path: Path | str, data: bytes, replace: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and ``os.replace``.

    The rename replaces whatever ``path`` was, a symbolic link included, and never writes through
    it. ``replace=False``: FileExistsError if ``path`` exists, checked atomically (a hard link).
    """
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
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path, follow_symlinks=False)  # EEXIST, whatever path is
            os.unlink(tmp)
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
