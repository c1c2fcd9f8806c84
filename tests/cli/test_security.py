"""Run folders, names and signals from someone else: nothing runs, nothing outside is written, nothing crashes.

Every case goes through the real command line on tiny runs: ``python -m nncli`` in a subprocess, or
(batches of refusals) a process forked from one that has imported nncli (``forked_cli``). A
run folder is untrusted input: its name may be crafted, its files may be links, damaged or edited.
The guarantees checked here are listed, with these test names, in docs/reliability.md.

Some cases need a signal or a kill at one exact moment (the final test evaluation, the creation of
the run folder): the child process then runs ``nncli.cli.main`` with a one-line hook that sends the
signal to itself at that moment, so the case is deterministic instead of a race.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from forked_cli import run_forked
from support import Result, assert_refused, folder_listing, nncli_env, run_main, run_many, run_nncli

from nncli.runs.checkpoint import digest, load_checkpoint, state_path
from nncli.runs.session import prepare
from nncli.runs.train_run import run_session

CONFIG = {
    "name": "sec",
    "seed": 0,
    "model": {
        "input_shape": [2],
        "layers": [{"type": "MM", "out": 8}, {"type": "Tanh"}, {"type": "MM", "out": 3}],
    },
    "loss": "cross_entropy",
    "data": {"source": "spirals", "n_samples": 60, "classes": 3, "batch_size": 20, "test_split": 0.2},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"steps": 8, "log_every": 2, "eval_every": 4},
}


class StopAt:
    """Asks the trainer to stop after ``step``, as the first Ctrl-C does (a checkpoint of that step)."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, trainer) -> None:
        if trainer.state.step == self.step:
            trainer.request_stop("SIGINT")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A config, a completed run and a run interrupted at step 4 of 8 (resumable)."""
    work = tmp_path_factory.mktemp("sec")
    cfg = work / "sec.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    for name, stop in (("done", None), ("stopped", 4)):
        s = prepare(cfg, [], name=name)
        run_session(s, work / "runs", callbacks=[StopAt(stop)] if stop else [])
        s.folder.rename(work / name)
    shutil.rmtree(work / "runs")
    return work


def copy_run(work: Path, name: str, dest: Path, as_name: str | None = None) -> Path:
    """A copy of the fixture run ``name`` under ``dest`` (a runs folder of its own)."""
    run = dest / (as_name or f"{name}-20260101-000000")
    shutil.copytree(work / name, run, symlinks=True)
    return run


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


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def forge_sidecar(run: Path, change) -> None:
    """Rewrite the ``last`` sidecar with its training state changed and a *valid* checksum, as a
    buggy or hostile writer could: only the type checks can refuse it."""
    from safetensors.numpy import load, save

    path = state_path(run / "checkpoints", "last")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    tensors = load(raw)
    state = json.loads(meta["state"])
    change(state)
    meta["state"] = json.dumps(state)
    meta["sha256"] = digest(tensors, meta)
    path.write_bytes(save(tensors, metadata=meta))


# -- 1. names are data, never code ------------------------------------------------------------------------
#: closes the docstring, a ''' string and a "..." string, escapes, and breaks the line: each is code if pasted
HOSTILE_NAME = 'x"""' + "'''" + '\\"\n__import__("pathlib").Path("MARKER").touch() #{}\n"""'


def test_a_crafted_run_folder_name_never_runs_code_in_the_exported_file(work, tmp_path):
    pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    run = copy_run(work, "done", tmp_path / "runs", as_name=HOSTILE_NAME)
    out = tmp_path / "model.py"
    res = run_nncli("export", run, "-o", out, cwd=tmp_path)
    assert res.code == 0, res
    check = f"import runpy; assert runpy.run_path({str(out)!r})['RUN'] == {HOSTILE_NAME!r}"
    proc = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert not (tmp_path / "MARKER").exists()


# -- 2. no write outside the run folder, no link followed -------------------------------------------------
@pytest.mark.parametrize("resume_refused", [True, False], ids=["refused-resume", "resume"])
def test_resume_never_writes_through_a_lock_symlink(work, tmp_path, resume_refused):
    run = copy_run(work, "stopped", tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(victim)
    if resume_refused:  # refused for another reason too: the lock target must still be untouched
        (run / "config.yaml").write_text((run / "config.yaml").read_text() + "garbage: [\n")
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert_refused(res, ".lock" if not resume_refused else "")
    assert victim.read_text() == "precious\n"
    assert (run / ".lock").is_symlink()


@pytest.mark.parametrize(
    "planted",
    ["metrics.jsonl", "run.json", "summary.json", "checkpoints", "checkpoints/.last.safetensors.pending"],
)
def test_resume_refuses_any_symlink_in_the_run_folder(work, tmp_path, planted):
    run = copy_run(work, "stopped", tmp_path)
    victim = tmp_path / "victim"
    if planted == "checkpoints":
        shutil.copytree(run / "checkpoints", victim)
        shutil.rmtree(run / "checkpoints")
    else:
        victim.write_text("precious\n")
        if (run / planted).exists():
            shutil.copy(run / planted, victim)  # same content: only the link is wrong
            (run / planted).unlink()
    (run / planted).symlink_to(victim)
    before = folder_listing(victim) if victim.is_dir() else victim.read_bytes()
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert_refused(res, planted.split("/")[0], "symbolic link")
    assert (folder_listing(victim) if victim.is_dir() else victim.read_bytes()) == before


# -- 3. export never overwrites a run's files, nor any file without --force ---------------------------------
def test_export_refuses_to_overwrite_files_of_a_run_or_existing_files(work, tmp_path):
    pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    run = copy_run(work, "done", tmp_path / "runs")
    mine = tmp_path / "mine.py"
    mine.write_text("# mine\n")
    link = tmp_path / "link.py"
    link.symlink_to(run / "config.yaml")
    escape = tmp_path / "elsewhere"
    escape.mkdir()
    before = folder_listing(run)
    results = run_many(
        {
            "config.yaml": {"args": ["export", run, "-o", run / "config.yaml", "--force"]},
            "best checkpoint": {
                "args": ["export", run, "-o", run / "checkpoints/best.safetensors", "--force"]
            },
            "new file in the run": {"args": ["export", run, "-o", run / "model.py"]},
            "link into the run": {"args": ["export", run, "-o", link, "--force"]},
            "existing file": {"args": ["export", run, "-o", mine]},
        },
        run=run_forked,
    )
    for name, res in results.items():
        assert_refused(res, "pass --force" if name == "existing file" else "inside the run folder")
    assert folder_listing(run) == before and mine.read_text() == "# mine\n"
    # the default <run>/export/model.py: written once, then refused without --force, replaced with it
    # (the exports that succeed run in this process, where torch is imported once, not per process)
    assert run_main("export", run).code == 0
    assert_refused(run_forked("export", run), "already exists; pass --force")
    assert run_main("export", run, "--force").code == 0
    # an export/ folder that is a link out of the run is never written through
    shutil.rmtree(run / "export")
    (run / "export").symlink_to(escape)
    assert_refused(run_forked("export", run), "symbolic link")
    assert list(escape.iterdir()) == []
    assert run_main("export", run, "-o", mine, "--force").code == 0 and "load_model" in mine.read_text()


# -- 5. the checkpoint checksum covers the training state ---------------------------------------------------
def test_one_changed_byte_of_the_step_in_the_sidecar_is_refused(work, tmp_path):
    run = copy_run(work, "stopped", tmp_path)
    path = state_path(run / "checkpoints", "last")
    raw = path.read_bytes()
    old = b'"state":"{\\"step\\": 4,'  # the training state's step, inside the JSON header
    assert raw.count(old) == 1
    path.write_bytes(raw.replace(old, old.replace(b"4", b"9")))  # same length, one byte changed
    before = folder_listing(run)
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert_refused(res, "last.state.safetensors", "checksum mismatch", place=str(path))
    assert folder_listing(run) == before


def test_a_checkpoint_of_another_run_is_refused(work, tmp_path):
    run = copy_run(work, "stopped", tmp_path)
    other = copy_run(work, "done", tmp_path / "other")
    shutil.copy(state_path(other / "checkpoints", "last"), state_path(run / "checkpoints", "last"))
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert_refused(res, "come from different saves")


# -- 8. damaged run folders: one line naming the file, exit 2; listings skip and say so -----------------------
def damage_cases():
    """name → (what to damage, the file the error must name, text it must contain)."""
    return {
        "status not a status": (
            lambda r: edit_json(r / "run.json", lambda d: d.update(status=5)),
            "run.json",
            "'status'",
        ),
        "overrides a string": (
            lambda r: edit_json(r / "run.json", lambda d: d.update(overrides="x")),
            "run.json",
            "'overrides'",
        ),
        "data a list": (
            lambda r: edit_json(r / "run.json", lambda d: d.update(data=[1])),
            "run.json",
            "'data'",
        ),
        "base dir a number": (
            lambda r: edit_json(r / "run.json", lambda d: d.update(data_base_dir=3)),
            "run.json",
            "'data_base_dir'",
        ),
        "run.json a list": (
            lambda r: (r / "run.json").write_text("[1, 2]"),
            "run.json",
            "expected a JSON object",
        ),
        "run.json deeply nested": (
            lambda r: (r / "run.json").write_text("[" * 100000 + "]" * 100000),
            "run.json",
            "",
        ),
        "metrics line not an object": (
            lambda r: (r / "metrics.jsonl").write_text("[1, 2]\n" + (r / "metrics.jsonl").read_text()),
            "metrics.jsonl:1",
            "expected a JSON object",
        ),
        "metrics step a string": (
            lambda r: (r / "metrics.jsonl").write_text('{"step": "x"}\n' + (r / "metrics.jsonl").read_text()),
            "metrics.jsonl:1",
            "'step'",
        ),
        "sidecar step a string": (
            lambda r: forge_sidecar(r, lambda s: s.update(step="abc")),
            "last.state.safetensors",
            "'step'",
        ),
        "sidecar step negative": (
            lambda r: forge_sidecar(r, lambda s: s.update(step=-3)),
            "last.state.safetensors",
            "'step'",
        ),
        "sidecar rng garbage": (
            lambda r: forge_sidecar(r, lambda s: s.update(rng=[1])),
            "last.state.safetensors",
            "'rng'",
        ),
        "sidecar state a list": (
            lambda r: forge_sidecar(r, lambda s: (s.clear(), None)),
            "last.state.safetensors",
            "",
        ),
    }


def test_resume_of_a_damaged_run_folder_is_one_line_naming_the_file(work, tmp_path):
    cases, runs = damage_cases(), {}
    for i, (name, (damage, _, _)) in enumerate(cases.items()):
        runs[name] = run = copy_run(work, "stopped", tmp_path / str(i))
        damage(run)
    before = {name: (folder_listing(run), (run / ".lock").read_bytes()) for name, run in runs.items()}
    results = run_many(
        {name: {"args": ["train", "--resume", run, "-q", "--no-curves"]} for name, run in runs.items()},
        run=run_forked,
    )
    for name, res in results.items():
        _, file, text = cases[name]
        assert_refused(res, file, text)
        after = (folder_listing(runs[name]), (runs[name] / ".lock").read_bytes())
        assert after == before[name], name  # nothing written, not even a PID into .lock
    # eval and export read run.json the same way
    bad = runs["data a list"]
    assert_refused(run_nncli("eval", bad), "run.json", "'data'")
    assert_refused(run_nncli("export", bad, "-o", tmp_path / "m.py"), "run.json", "'data'")


def test_runs_and_plot_list_the_rest_with_a_warning(work, tmp_path):
    runs = tmp_path / "runs"
    good = copy_run(work, "done", runs, as_name="good")
    bad_info = copy_run(work, "done", runs, as_name="bad-info")
    (bad_info / "run.json").write_text('{"status": ')
    bad_line = copy_run(work, "done", runs, as_name="bad-line")
    text = (bad_line / "metrics.jsonl").read_text().splitlines()
    text.insert(1, '"just a string"')
    (bad_line / "metrics.jsonl").write_text("\n".join(text) + "\n")
    fifo = copy_run(work, "done", runs, as_name="fifo")
    (fifo / "metrics.jsonl").unlink()
    os.mkfifo(fifo / "metrics.jsonl")  # would block a plain read forever
    summary = copy_run(work, "done", runs, as_name="odd-summary")
    edit_json(summary / "summary.json", lambda d: d.update(steps="many", wall_time=[1], test={"acc": "x"}))
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    results = run_many(
        {
            "runs": {"args": ["runs", runs, "--json"], "timeout": 60},
            "plot": {"args": ["plot", bad_line, good, not_a_run, "--terminal"], "timeout": 60},
        }
    )
    res = results["runs"]
    assert res.code == 0 and "Traceback" not in res.err, res
    rows = {r["run"]: r for r in json.loads(res.out)}
    assert sorted(rows) == ["bad-line", "fifo", "good", "odd-summary"], res
    assert rows["bad-line"]["best_value"] == rows["good"]["best_value"]  # only the bad line is skipped
    assert rows["odd-summary"]["steps"] is None and rows["odd-summary"]["wall_time"] is None
    warnings = res.err.splitlines()
    assert any("bad-info/run.json" in w and "run skipped" in w for w in warnings), res
    assert any("bad-line/metrics.jsonl:2" in w for w in warnings), res
    assert any("fifo/metrics.jsonl" in w and "not a regular file" in w for w in warnings), res
    assert all(w.startswith("warning: ") for w in warnings), res
    res = results["plot"]
    assert res.code == 0 and "Traceback" not in res.err, res
    assert "bad-line/metrics.jsonl:2" in res.err and f"{not_a_run}: no run folders inside" in res.err, res
    assert "train_loss" in res.out


@pytest.mark.parametrize(
    "args",
    [["train"], ["train", "--resume"], ["eval"], ["export"], ["plot"], ["runs"], ["runs", "diff", "x"]],
    ids=" ".join,
)
def test_a_nul_byte_in_a_path_is_a_clean_refusal(args, tmp_path):
    # a shell cannot pass a NUL byte, so this goes through nncli.cli.main in this process
    res = run_main(*args, "a\0b")
    assert res.code == 2 and "Traceback" not in res.err, res
    assert "null byte" in res.err or "no such" in res.err, res


# -- 10. signals: every phase ends in a consistent run.json and the documented exit code ---------------------
def the_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    return run


def test_sigterm_during_the_final_test_evaluation_marks_the_run_interrupted_then_resume_finishes(
    work, tmp_path
):
    hook = "import nncli.runs.session as S; at(S.Session, 'finish', signal.SIGTERM)"
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
    hook = "import nncli.runs.session as S; at(S.Session, '__init__', signal.SIGTERM)"
    res = hooked(hook, "train", work / "sec.yaml", "--runs-dir", tmp_path / "runs", "-q")
    assert res.code == 143 and "Traceback" not in res.err, res
    assert not (tmp_path / "runs").exists()


def test_sigterm_while_the_folder_is_created_ends_interrupted_at_step_0_and_resumes(work, tmp_path):
    hook = "import nncli.runs.session as S; at(S.Session, '_write_new_run', signal.SIGTERM)"
    res = hooked(hook, "train", work / "sec.yaml", "--runs-dir", tmp_path / "runs", "-q", "--no-curves")
    assert res.code == 143, res
    run = the_run(tmp_path / "runs")
    assert status(run) == "interrupted"
    assert run_nncli("train", "--resume", run, "-q", "--no-curves").code == 0 and status(run) == "completed"


def test_kill_9_while_the_folder_is_created_leaves_no_half_made_run(work, tmp_path):
    runs = tmp_path / "runs"
    hook = "import nncli.runs.run_info as F; at(F, 'atomic_write_json', signal.SIGKILL, after=True)"
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
