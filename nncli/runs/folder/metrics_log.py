"""metrics.jsonl: one JSON object per line, appended and flushed as training goes.

Reading is tolerant where it must be (a run may still be going, or have been killed mid-write):
``read_metrics`` skips a torn line quietly and a damaged one with a warning; ``trim_metrics`` (a
resume) refuses a damaged one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nncli.runs.atomic import atomic_write_text, jsonable, open_for_writing, with_filename
from nncli.runs.folder.run_dir import RunError
from nncli.runs.folder.safe_read import read_file


def _quiet(msg: str) -> None:
    pass


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
