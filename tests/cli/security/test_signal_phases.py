"""Signals at every phase of a run: each ends in a consistent run.json and the documented exit code.

Some cases need a signal or a kill at one exact moment (the final test evaluation, the creation of
the run folder): the child process then runs ``nncli.cli.main`` with a one-line hook that sends the
signal to itself at that moment, so the case is deterministic instead of a race.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from security_runs import CONFIG, StopAt
from support import Result, nncli_env, run_nncli

from nncli.runs.checkpoint import load_checkpoint
from nncli.runs.session.prepare import prepare
from nncli.runs.train_run import run_session

#: defined in the child before ``nncli.cli.main`` runs: ``at(owner, name, sig)`` makes the function
#: ``owner.name`` send the process ``sig`` when it is called (``after=True``: when it returns)
AT = """
import os, signal, sys
def at(owner, name, sig, after=False):
    real = getattr(owner, name)
    def wrapped(*a, **k):
        if not after:
            os.kill(os.getpid(), sig)
        out = real(*a, **k)
        if after:
            os.kill(os.getpid(), sig)
        return out
    setattr(owner, name, wrapped)
"""


def hooked(hook: str, *args, cwd: Path | None = None, timeout: float = 120) -> Result:
    """``nncli *args`` in a subprocess whose ``hook`` (Python code using ``at``) runs first, to send
    itself a signal at an exact moment; a SIGKILL shows as exit code -9."""
    code = f"{AT}\n{hook}\nfrom nncli.cli import main\nmain(sys.argv[1:])\n"
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=cwd,
        env=nncli_env(),
        capture_output=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), [str(a) for a in args])


def status(run: Path) -> str:
    return json.loads((run / "run.json").read_text())["status"]


# -- 10. signals: every phase ends in a consistent run.json and the documented exit code ---------------------
def the_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    return run


def test_sigterm_during_the_final_test_evaluation_marks_the_run_interrupted_then_resume_finishes(
    work, tmp_path
):
    hook = "import nncli.runs.session.prepare as S; at(S.Session, 'finish', signal.SIGTERM)"
    res = hooked(hook, "train", work / "sec.yaml", "--runs-dir", tmp_path / "runs", "-q", "--no-curves")
    assert res.code == 143, res
    run = the_run(tmp_path / "runs")
    assert status(run) == "interrupted", res
    assert "--resume" in res.err and "Traceback" not in res.err, res
    assert load_checkpoint(run / "checkpoints", "last").state["step"] == CONFIG["train"]["steps"]
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert res.code == 0, res
    assert status(run) == "completed"
    assert json.loads((run / "summary.json").read_text())["test"]["acc"] is not None


def test_a_second_quick_sigterm_still_exits_143(work, tmp_path):
    # the first SIGTERM after the log line of step 2, the second while the first is being handled
    hook = (
        "import nncli.training.loop as L\n"
        "at(L.Trainer, '_log', signal.SIGTERM, after=True)\n"
        "at(L.Trainer, 'request_stop', signal.SIGTERM, after=True)"
    )
    res = hooked(hook, "train", work / "sec.yaml", "--runs-dir", tmp_path / "runs", "-q", "--no-curves")
    assert res.code == 143, res
    run = the_run(tmp_path / "runs")
    assert status(run) == "interrupted" and "Traceback" not in res.err, res
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert res.code == 0 and status(run) == "completed", res


class SignalTwice:
    """At ``step``, Ctrl-C twice: the second one stops the session at once (the Stopped path)."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, trainer) -> None:
        if trainer.state.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("stop", [StopAt(2), SignalTwice(2)], ids=["first-signal", "second-signal"])
def test_an_in_process_session_gives_back_the_signal_handlers(work, tmp_path, stop):
    # a library caller (or a test) must not be left ignoring Ctrl-C, nor a process it starts later
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    s = prepare(work / "sec.yaml", [], name="handlers")
    assert run_session(s, tmp_path / "runs", callbacks=[stop]).exit_code == 130
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_sigterm_during_start_up_exits_143_and_writes_nothing(work, tmp_path):
    hook = "import nncli.runs.session.prepare as S; at(S.Session, '__init__', signal.SIGTERM)"
    res = hooked(hook, "train", work / "sec.yaml", "--runs-dir", tmp_path / "runs", "-q")
    assert res.code == 143 and "Traceback" not in res.err, res
    assert not (tmp_path / "runs").exists()


def test_sigterm_while_the_folder_is_created_ends_interrupted_at_step_0_and_resumes(work, tmp_path):
    hook = "import nncli.runs.session.prepare as S; at(S.Session, '_write_new_run', signal.SIGTERM)"
    res = hooked(hook, "train", work / "sec.yaml", "--runs-dir", tmp_path / "runs", "-q", "--no-curves")
    assert res.code == 143, res
    run = the_run(tmp_path / "runs")
    assert status(run) == "interrupted"
    assert run_nncli("train", "--resume", run, "-q", "--no-curves").code == 0 and status(run) == "completed"


def test_kill_9_while_the_folder_is_created_leaves_no_half_made_run(work, tmp_path):
    runs = tmp_path / "runs"
    hook = "import nncli.runs.folder.run_info as F; at(F, 'atomic_write_json', signal.SIGKILL, after=True)"
    res = hooked(hook, "train", work / "sec.yaml", "--runs-dir", runs, "-q")
    assert res.code == -9, res
    assert [p for p in runs.iterdir() if not p.name.startswith(".")] == []  # no half-made run folder
    res = run_nncli("runs", runs)
    assert res.code == 0 and "killed while it was being created" in res.err, res
    # and a run killed once its folder exists, before any checkpoint, resumes from step 0
    hook = "import nncli.training.loop as L; at(L.Trainer, 'run', signal.SIGKILL)"
    runs2 = tmp_path / "runs2"
    assert hooked(hook, "train", work / "sec.yaml", "--runs-dir", runs2, "-q").code == -9
    run = the_run(runs2)
    res = run_nncli("runs", runs2, "--json")
    assert json.loads(res.out)[0]["status"] == "stopped", res
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert res.code == 0 and status(run) == "completed", res
    assert np.isfinite(json.loads((run / "summary.json").read_text())["final"]["val_loss"])
