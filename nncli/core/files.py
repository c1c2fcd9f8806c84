"""Reading the files a user names (configs, data) with limits: a path is checked before it is opened,
only regular files are read (never ``/dev/zero`` or a FIFO, which would never end), and never more
bytes than the caller allows.

Problems are UserErrors without a place; the caller puts the file's name in front.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nncli.core.errors import UserError


def check_regular_file(path: str | Path, what: str) -> int:
    """The size of ``path`` in bytes; UserError when it has a NUL byte, is missing, or is not a
    regular file. ``what`` names the expected kind (``a YAML config file``)."""
    text = os.fspath(path)
    if "\0" in text:
        raise UserError("the path contains a NUL byte (\\x00), which no file name can hold")
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise UserError("no such file") from None
    except NotADirectoryError:
        raise UserError("no such file (a part of the path is not a folder)") from None
    except OSError as exc:
        raise UserError(f"cannot read the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"is a directory, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"is not a regular file (a device, FIFO or socket); {what} must be a file")
    return st.st_size


def too_large(size: int, limit: int, what: str) -> UserError:
    return UserError(f"is {size:,} bytes, more than the {limit:,} bytes read from {what}")


def read_limited(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, refused (UserError) when there are more than ``limit``."""
    size = check_regular_file(path, what)
    if size > limit:
        raise too_large(size, limit, what)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise UserError(f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew since it was measured
        raise too_large(len(data), limit, what)
    return data
