"""Smoke test of an installed ``nncli``, as a user who ran only ``pip install .`` would meet it.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install . && /tmp/v/bin/python tests/smoke/smoke.py

Run it with the python of the environment to test (it finds ``nncli`` beside that python), from the
root of the repository (it trains a shipped config). It needs only the standard library and checks
what needs no extra: help, version, every kind of usage error (exit 2, no traceback), a short train,
inspect (also with a non-UTF-8 stdout), gradcheck, eval, runs, export without the torch/onnx extras
(exit 2 naming the extra) and plot without matplotlib (a chart, or --confusion's table, in the
terminal). Exit 0 when every
check passes; otherwise each failure is printed with the command's output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "digits_mlp.yaml"
failures: list[str] = []


def nncli_command() -> list[str]:
    here = Path(sys.executable).parent
    for name in ("nncli", "nncli.exe"):
        if (here / name).exists():
            return [str(here / name)]
    found = shutil.which("nncli")
    if found is None:
        sys.exit("smoke: no nncli script beside this python or on PATH; is nncli installed?")
    return [found]


NNCLI = nncli_command()


def run(*args, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLUMNS", "NNCLI_DEBUG", "PYTHONPATH", "PYTHONIOENCODING")
    }
    full_env.update(env or {})
    return subprocess.run(
        [*NNCLI, *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
        encoding="utf-8",
        errors="replace",
    )


def check(what: str, proc: subprocess.CompletedProcess, code: int, *texts: str, stream: str = "any") -> None:
    out = {"stdout": proc.stdout, "stderr": proc.stderr, "any": proc.stdout + proc.stderr}[stream]
    problems = []
    if proc.returncode != code:
        problems.append(f"exit {proc.returncode}, expected {code}")
    if "Traceback" in proc.stdout + proc.stderr:
        problems.append("a traceback was printed")
    problems += [f"missing {t!r} on {stream}" for t in texts if t not in out]
    status = "ok  " if not problems else "FAIL"
    print(f"{status} {what}", flush=True)
    if problems:
        failures.append(
            f"{what}: {'; '.join(problems)}\n$ nncli {' '.join(proc.args[1:])}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )


def usage_error(what: str, *args: str) -> None:
    """Exit 2, no traceback, and one message: typer's usage block or one ``error:`` line."""
    proc = run(*args)
    check(what, proc, 2, stream="stderr")
    err = proc.stderr.strip()
    if not (err.startswith("Usage:") or (err.startswith("error:") and "\n" not in err)) or proc.stdout:
        failures.append(
            f"{what}: expected typer's usage message or one 'error:' line on stderr, got\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )


def main() -> int:
    from importlib import metadata  # the installed version, which --version must print

    version = run("--version")
    found = []
    for dist in ("nncli", "typer", "click", "rich"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"no {dist}")
    print(f"smoke: {NNCLI[0]} ({', '.join(found)})", flush=True)
    check("--help", run("--help"), 0, "train", "inspect", "gradcheck")
    check("-h", run("-h"), 0, "train", "inspect")
    check("train -h", run("train", "-h"), 0, "--set")
    check("--version", version, 0, f"nncli {metadata.version('nncli')}", stream="stdout")
    check("bare nncli (the help)", run(), 0, "train", "inspect", stream="stdout")
    check("--show-completion", run("--show-completion", env={"SHELL": "/bin/bash"}), 0, "nncli")

    usage_error("unknown command", "trian")
    usage_error("unknown option", "train", "--nope")
    usage_error("bad option value", "sweep", CONFIG, "--grid", "optimizer.lr=0.1", "--jobs", "abc")
    usage_error("missing argument", "eval")
    usage_error("--set key value without =", "train", CONFIG, "--set", "optimizer.lr", "0.1")
    usage_error("--set key without =", "train", CONFIG, "--set", "optimizer.lr")
    usage_error("config that does not exist", "train", "no-such-config.yaml")

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        check(
            "train (50 steps)",
            run("train", CONFIG, "--set", "train.steps=50", "--runs-dir", runs, "--name", "smoke"),
            0,
            "run folder",
        )
        folders = sorted(runs.glob("smoke-*"))
        if not folders:
            failures.append("train: no run folder under " + str(runs))
            return report()
        folder = folders[0]
        check("inspect", run("inspect", CONFIG), 0, "parameters:", stream="stdout")
        check("inspect --trace", run("inspect", CONFIG, "--trace"), 0, "trace", stream="stdout")
        check(
            "inspect, cp1252 stdout",
            run("inspect", CONFIG, "--trace", env={"PYTHONIOENCODING": "cp1252"}),
            0,
            "parameters:",
            stream="stdout",
        )
        check("gradcheck (self-test)", run("gradcheck"), 0, "PASS", stream="stdout")
        check("eval", run("eval", folder), 0)
        check("runs", run("runs", runs), 0, "smoke", stream="stdout")
        check("export without torch", run("export", folder), 2, "pip install 'nncli[torch]'", stream="stderr")
        check(
            "export without onnx",
            run("export", folder, "--format", "onnx"),
            2,
            "pip install 'nncli[onnx]'",
            stream="stderr",
        )
        check("plot without matplotlib", run("plot", folder), 0, "pip install 'nncli[plot]'", stream="stderr")
        check(
            "plot --confusion without matplotlib",
            run("plot", folder, "--confusion"),
            0,
            "true \\ pred",
            stream="stdout",
        )
        check("eval --metrics", run("eval", folder, "--metrics", "f1_macro,roc_auc"), 0, "f1_macro")
    return report()


def report() -> int:
    if failures:
        print(f"\nsmoke: {len(failures)} check(s) failed\n", file=sys.stderr)
        for f in failures:
            print(f + "\n", file=sys.stderr)
        return 1
    print("smoke: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
