"""Running the real ``nncli`` command in subprocesses, and the checks every refused input must pass.

A refused input exits 2 with one line on stderr (``error: file:line:col: field: message``), no
traceback, nothing on stdout, and no run folder left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    code: int
    out: str
    err: str
    argv: list[str]

    def __str__(self) -> str:  # shown when an assertion fails
        return (
            f"$ nncli {' '.join(self.argv)}\nexit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"
        )


def run_nncli(
    *args,
    cwd: Path | str | None = None,
    timeout: float = 120,
    preexec_fn: Callable[[], None] | None = None,
    env: dict | None = None,
) -> Result:
    """``python -m nncli *args`` as a user would run it: stderr a pipe, not a terminal, no COLUMNS."""
    argv = [str(a) for a in args]
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NNCLI_DEBUG")}
    full_env.update(PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "nncli", *argv],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), argv)


def run_many(calls: dict[str, dict], workers: int = 4) -> dict[str, Result]:
    """Run several ``run_nncli(**kwargs)`` at once (interpreter start-up dominates each one)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            name: pool.submit(lambda kw: run_nncli(*kw.pop("args"), **kw), dict(kw))
            for name, kw in calls.items()
        }
        return {name: f.result() for name, f in futures.items()}


def assert_refused(
    res: Result, *expected: str, runs_dir: Path | None = None, place: str | None = None, problems: int = 1
) -> None:
    """Exit 2, one ``error:`` line per problem naming it (every ``expected`` text), no traceback.

    ``place``: text the first line must start with after ``error: `` (``file:line`` or ``file``);
    the lines of further problems start with the same file.
    ``runs_dir``: must not exist or be empty afterwards (no half-made run folder).
    """
    assert res.code == 2, res
    assert "Traceback" not in res.err, res
    assert res.err.startswith("error: "), res
    lines = res.err[len("error: ") :].rstrip("\n").split("\n")
    assert len(lines) == problems, res
    for text in expected:
        assert text in res.err, (text, str(res))
    if place is not None:
        assert lines[0].startswith(place), (place, str(res))
        file = place.split(":")[0]
        assert all(line.startswith(file) for line in lines[1:]), (file, str(res))
    assert res.out == "", res
    if runs_dir is not None:
        assert no_run_folder(runs_dir), (sorted(p.name for p in Path(runs_dir).iterdir()), str(res))


def no_run_folder(runs_dir: Path | str) -> bool:
    runs_dir = Path(runs_dir)
    return not runs_dir.exists() or not any(runs_dir.iterdir())


def folder_listing(folder: Path | str) -> list[tuple[str, int]]:
    """(relative path, size) of every file below ``folder``: compare before and after a command."""
    folder = Path(folder)
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
