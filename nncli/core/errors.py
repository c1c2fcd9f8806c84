"""Errors a user can cause, each carrying the place it points at.

`UserError` is rendered by the CLI as one line (``file:line:col: field: message``) and exit code 2;
anything else is a bug or a runtime failure (exit 1).
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass


@dataclass
class Place:
    """Where in a config file a value was written (1-based line and column)."""

    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file or "<config>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class UserError(Exception):
    """A problem with the user's input: config, data, command line or run folder.

    ``field`` is a dotted path such as ``model.layers[3].kernel``; ``place`` the file position.
    """

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, place: Place | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.place = place

    def __str__(self) -> str:
        head = []
        if self.place is not None:
            head.append(str(self.place))
        if self.field:
            head.append(self.field)
        return printable(": ".join(head + [self.message]))


class ConfigError(UserError):
    """A config that does not validate or does not build."""


class ShapeError(ConfigError):
    """A layer that cannot accept the shape the layer before it produces."""


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged, or made for a different model."""


class DataError(UserError):
    """A data file or array that cannot be used with the model."""


def did_you_mean(name: str, choices, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    lowered = {str(c).lower(): str(c) for c in choices}
    hits = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=cutoff)
    return f" (did you mean '{lowered[hits[0]]}'?)" if hits else ""


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\\x1b``, ``\\n``, ``\\u202e``): file
    names, CSV cells and YAML strings quoted in a message can neither move the cursor, recolour
    the terminal, reorder the text nor break the message's single line."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " " or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)
