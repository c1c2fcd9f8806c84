"""What the tests share: the CLI harness, config writers, and the checks every refused input must pass.

The CLI harness runs ``nncli`` one of four ways:

- :func:`run_nncli`: ``python -m nncli ...`` in a subprocess, as a user would run it, answering a
  :class:`Result` (code, out, err);
  :func:`start_nncli` starts one without waiting (for tests that signal or kill it);
- ``forked_cli.run_forked``: a process of its own forked from one that has imported nncli, for
  batches of refused inputs (no interpreter start-up per case), answering the same :class:`Result`;
- :func:`run_main`: ``nncli.cli.main`` in this process, stdout and stderr captured (fast, and
  monkeypatches apply), answering the same :class:`Result`;
- :func:`invoke`: the typer app through click's ``CliRunner``, which keeps an uncaught exception in
  ``.exception`` instead of turning a user error into a message (click's result object).

A refused input exits 2 with one line on stderr (``error: file:line:col: field: message``), no
traceback, nothing on stdout, and no run folder left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Result:
    code: int
    out: str
    err: str
    argv: list[str]

    def __iter__(self):  # code, out, err = run_nncli(...)
        return iter((self.code, self.out, self.err))

    def __str__(self) -> str:  # shown when an assertion fails
        return (
            f"$ nncli {' '.join(self.argv)}\nexit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"
        )


def nncli_env(env: dict | None = None) -> dict[str, str]:
    """The environment of a user's shell: this one without COLUMNS or NNCLI_DEBUG, unbuffered, plus ``env``."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NNCLI_DEBUG")}
    full_env.update(PYTHONUNBUFFERED="1", **(env or {}))
    return full_env


def run_nncli(
    *args,
    cwd: Path | str | None = None,
    timeout: float = 120,
    preexec_fn: Callable[[], None] | None = None,
    env: dict | None = None,
) -> Result:
    """``python -m nncli *args`` as a user would run it: stderr a pipe, not a terminal, no COLUMNS."""
    argv = [str(a) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "nncli", *argv],
        cwd=cwd,
        env=nncli_env(env),
        capture_output=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), argv)


def default_sigint() -> None:
    """A ``preexec_fn``: the child starts with SIGINT's default action. A process started with SIGINT
    ignored (``trap '' INT``, a background job of a non-interactive shell) passes that on to its
    children, and nncli then honours it; a test that stops nncli with SIGINT must not depend on how
    the suite itself was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_nncli(*args, cwd: Path | str | None = None, env: dict | None = None, **popen) -> subprocess.Popen:
    """``python -m nncli *args`` started in the background (stdout and stderr pipes unless ``popen``
    says otherwise); the caller waits for it, signals it or kills it."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-m", "nncli", *map(str, args)], cwd=cwd, env=nncli_env(env), **popen
    )


def run_main(*args) -> Result:
    """``nncli *args`` in this process through ``nncli.cli.main``: exit code, stdout, stderr.
    Exceptions other than SystemExit propagate."""
    from nncli.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue(), argv)


def invoke(*args):
    """``nncli *args`` through click's CliRunner on the typer app (no top-level error handling): the
    runner's result, with ``exit_code``, ``stdout``, ``output`` and ``exception``."""
    from typer.testing import CliRunner

    from nncli.cli import _register_commands, app

    _register_commands()
    return CliRunner().invoke(app, [str(a) for a in args])


def write_config(folder: Path | str, cfg: dict | str, name: str = "cfg.yaml") -> Path:
    """``cfg`` written to ``folder/name``: a dict as YAML, a string as it is (dedented)."""
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(cfg) if isinstance(cfg, dict) else textwrap.dedent(cfg))
    return path


def merge(base: dict, extra: dict) -> dict[str, Any]:
    """A deep copy of ``base`` with ``extra`` merged in, section by section."""
    out = json.loads(json.dumps(base))
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_many(
    calls: dict[str, dict], workers: int = 4, run: Callable[..., Result] | None = None
) -> dict[str, Result]:
    """Run several ``run(*args, **kwargs)`` at once: ``run_nncli`` by default (interpreter start-up
    dominates each one), or ``forked_cli.run_forked``."""
    run = run or run_nncli
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            name: pool.submit(lambda kw: run(*kw.pop("args"), **kw), dict(kw)) for name, kw in calls.items()
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
