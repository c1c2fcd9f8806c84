"""Reading files from a run folder that may come from someone else.

Every file is read only if it is a regular file (no link followed, no FIFO waited on) and not
larger than such a file can be; what cannot be read is a ``RunError`` naming the file, or, for the
tolerant readers (``read_json``, ``read_config``), blank data and a warning.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nncli.runs.atomic import NOFOLLOW
from nncli.runs.folder.run_dir import RunError

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
