"""Human output on a terminal or pipe that is not UTF-8 (``PYTHONIOENCODING=cp1252``, a Windows console).

nncli's tables and messages use the notes' symbols (σ, ∂J/∂z, θ, ‖·‖, →) and the terminal chart
draws with braille dots. Where stdout or stderr cannot encode a character, it is written as ASCII
instead of raising UnicodeEncodeError: ``σ`` → ``sigma``, ``∂J/∂z`` → ``dJ/dz``, ``→`` → ``->``,
box-drawing lines → ``-``/``|``/``+``, braille dots → ``*``. Only characters the stream cannot
encode are replaced; rich already draws its table borders in ASCII on such a stream.

``ascii_fallback_streams`` installs this on the process's stdout and stderr (a safety net for any
writer); ``Console`` applies it to strings before rich lays them out, so table columns stay aligned.
"""

from __future__ import annotations

import codecs
import os
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console as _RichConsole

ERRORS = "nncli-ascii"

ASCII = {
    "σ": "sigma",
    "Σ": "Sum",
    "∂": "d",
    "θ": "theta",
    "μ": "mu",
    "µ": "mu",
    "γ": "gamma",
    "β": "beta",
    "ε": "eps",
    "ℓ": "l",
    "α": "alpha",
    "λ": "lambda",
    "η": "eta",
    "∇": "grad",
    "√": "sqrt",
    "→": "->",
    "←": "<-",
    "‖": "|",
    "≤": "<=",
    "≥": ">=",
    "≠": "!=",
    "≈": "~",
    "×": "x",
    "·": "*",
    "⊙": "*",
    "∘": "o",
    "−": "-",
    "–": "-",
    "—": "--",
    "…": "...",
    "²": "^2",
    "³": "^3",
    "ᵀ": "^T",
    "⁻": "^-",
    "¹": "1",
    "∈": " in ",
    "●": "*",
    "•": "*",
    "✓": "ok",
    "✗": "x",
    "°": " deg",
    "\u0302": "^",  # combining circumflex: σ̂ -> sigma^
    "─": "-",
    "━": "-",
    "│": "|",
    "┃": "|",
    "┤": "+",
    "├": "+",
    "┼": "+",
    "└": "+",
    "┘": "+",
    "┌": "+",
    "┐": "+",
    "┬": "+",
    "┴": "+",
    "╭": "+",
    "╮": "+",
    "╯": "+",
    "╰": "+",
}


def _to_ascii(ch: str) -> str:
    if ch in ASCII:
        return ASCII[ch]
    if "\u2800" <= ch <= "\u28ff":  # braille cell of the terminal chart: a dot or a blank
        return " " if ch == "\u2800" else "*"
    plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    return plain or "?"


def _fallback(exc: UnicodeError):
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return "".join(_to_ascii(ch) for ch in exc.object[exc.start : exc.end]), exc.end


codecs.register_error(ERRORS, _fallback)


def ascii_fallback_streams() -> None:
    """Make stdout and stderr write what their encoding cannot hold as ASCII (see the module's doc)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-")
        if encoding.startswith("utf") or not hasattr(stream, "reconfigure"):
            continue
        try:
            stream.reconfigure(errors=ERRORS)
        except (ValueError, OSError):  # closed or detached: nothing to write to anyway
            pass


def encodable(text: str, encoding: str) -> str:
    """``text`` with every character ``encoding`` cannot hold replaced by its ASCII rendering."""
    try:
        return text.encode(encoding, errors=ERRORS).decode(encoding)
    except LookupError:  # an encoding Python does not know: leave it to the stream
        return text


class Console(_RichConsole):
    """A rich console that writes the notes' symbols as ASCII on a stream that cannot encode them."""

    def render_str(self, text: str, *args, **kwargs):
        encoding = self.encoding
        if not encoding.startswith("utf"):
            text = encodable(text, encoding)
        return super().render_str(text, *args, **kwargs)


@contextmanager
def stdout_kept_for_json(on: bool = True) -> Iterator[None]:
    """Inside, whatever is written to standard output goes to standard error instead: by Python code
    (``sys.stdout``) and at the file-descriptor level, by a library's C code or its own threads. A
    command with ``--json`` wraps its work in this, so that its stdout is the JSON document alone.
    Ray's driver prints some cluster messages (a worker lost by the raylet) to stdout even with
    ``log_to_driver=False``, which had put text before a sweep's JSON. A no-op unless ``on``."""
    if not on:
        yield
        return
    sys.stdout.flush()
    try:
        saved_fd, saved_stream = os.dup(1), sys.stdout
    except OSError:  # no file descriptor 1 (closed by whoever started us): nothing to keep apart
        yield
        return
    try:
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        yield
    finally:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
            sys.stdout = saved_stream
