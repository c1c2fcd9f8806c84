"""``nncli`` in a separate process forked from a server that has imported nncli once.

A ``python -m nncli`` subprocess spends ~0.4 s CPU starting Python and importing numpy, pydantic and
nncli before it reads its config; a test module that checks dozens of refused inputs pays that dozens of
times. Here multiprocessing's fork server imports ``nncli.cli`` once; each call forks it, and the child
runs ``nncli/__main__.py`` with its own argv, working directory and environment, stdout and stderr
redirected at the file-descriptor level to files (not terminals, as in a script or a CI log), and exits
with the CLI's exit code. What differs from a fresh interpreter: the imports are not run again, and
variables read at import time (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``) keep the server's
values, so cases that depend on those run as real subprocesses (``support.run_nncli``).

    run_forked(*args, cwd=..., env=..., timeout=...)   → support.Result, as run_nncli gives;
                                                         safe to call from several threads (run_many)
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import runpy
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from support import Result, nncli_env

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["nncli.cli", "forked_cli"])
_status_lock = threading.Lock()


def _child(argv: list[str], cwd: str | None, env: dict[str, str], out_path: str, err_path: str) -> None:
    """The forked process's body: what ``python -m nncli ARGV`` would do after its imports."""
    if cwd is not None:
        os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 (the process's own stream)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["nncli", *argv]  # argv[0] becomes nncli/__main__.py's path, as with python -m
    runpy.run_module("nncli", run_name="__main__", alter_sys=True)  # SystemExit carries the exit code


def run_forked(*args, cwd: Path | str | None = None, timeout: float = 120, env: dict | None = None) -> Result:
    """``nncli *args`` in a process forked from the fork server; the same Result as ``run_nncli``."""
    argv = [str(a) for a in args]
    with tempfile.TemporaryDirectory(prefix="nncli-forked") as tmp:
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        proc = _context.Process(
            target=_child, args=(argv, None if cwd is None else str(cwd), nncli_env(env), out_path, err_path)
        )
        # multiprocessing reads a child's exit status from a pipe, and start() polls every earlier
        # child: two threads reading one status at once leave one with nothing (exit code 255)
        with _status_lock:
            proc.start()
        finished = multiprocessing.connection.wait([proc.sentinel], timeout)
        with _status_lock:
            if not finished:
                proc.kill()
                proc.join()
                raise subprocess.TimeoutExpired(["nncli", *argv], timeout)
            proc.join()
            code = proc.exitcode
            proc.close()
        out = Path(out_path).read_text() if os.path.exists(out_path) else ""
        err = Path(err_path).read_text() if os.path.exists(err_path) else ""
    return Result(code, out, err, argv)
