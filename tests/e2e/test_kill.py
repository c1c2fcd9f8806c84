"""Runs survive kill -9, SIGTERM and a second Ctrl-C: the folder stays readable and --resume is exact.

The kill test starts a real ``nncli train``, kills it (SIGKILL) at seeded random moments, checks
the folder, resumes, kills again, …, lets it finish and compares the final checkpoints bit for bit
with an uninterrupted run of the same config (float64, Adam, dropout, a cosine schedule).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from support import run_nncli, start_nncli, write_config

from nncli.runs.checkpoint import has_checkpoint, load_checkpoint, load_weights, weights_path
from nncli.runs.evaluate import evaluate
from nncli.runs.folder.metrics_log import read_metrics
from nncli.runs.folder.run_dir import RunError
from nncli.runs.listing import list_runs
from nncli.runs.session.prepare import prepare
from nncli.runs.session.resume import prepare_resume
from nncli.runs.train_run import run_session

pytestmark = pytest.mark.slow  # training processes killed with signals, then resumed

# a checkpoint every 5 steps: most of the wall time is spent in checkpoint fsyncs, so random kills
# land inside saves as often as between them
CONFIG = {
    "name": "kill",
    "seed": 5,
    "dtype": "float64",
    "model": {
        "input_shape": [2],
        "layers": [
            {"type": "MM", "out": 16},
            {"type": "ReLU"},
            {"type": "Dropout", "p": 0.2},
            {"type": "MM", "out": 3},
        ],
    },
    "data": {"source": "spirals", "n_samples": 120, "batch_size": 16, "val_split": 0.2},
    "optimizer": {"type": "adam", "lr": 0.01},
    "schedule": {"type": "cosine", "warmup_steps": 5},
    "train": {"steps": 1000, "log_every": 7, "eval_every": 50, "checkpoint_every": 5},
}
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def launch(*args, log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        # no curves.png: matplotlib's second per finished run is not what these tests are about
        return start_nncli("train", *args, "--quiet", "--no-curves", stdout=subprocess.DEVNULL, stderr=err)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.005)


def resumes(run: Path) -> int:
    return len(json.loads((run / "run.json").read_text()).get("resumes", []))


def wait_until_opened(run: Path, proc: subprocess.Popen, count: int, timeout: float = 60) -> None:
    """Wait until the process has (re)opened ``run``: run.json lists ``count`` resumes."""
    deadline = time.time() + timeout
    while resumes(run) < count:
        if proc.poll() is not None or time.time() > deadline:
            return
        time.sleep(0.005)


def wait_until_step(run: Path, proc: subprocess.Popen, step: int, timeout: float = 60) -> None:
    """Wait until metrics.jsonl shows ``step`` (or the process has ended)."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        records = read_metrics(run / "metrics.jsonl")
        if records and records[-1]["step"] >= step:
            return
        time.sleep(0.002)


def the_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if (p / "run.json").exists() and not p.name.startswith(".")]
    return run


def same_weights(a: Path, b: Path, which: str = "last") -> None:
    wa = load_weights(weights_path(a / "checkpoints", which))[0]
    wb = load_weights(weights_path(b / "checkpoints", which))[0]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].dtype == np.float64 and np.array_equal(wa[k], wb[k]), (which, k)


def no_times(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def assert_readable_after_kill(run: Path) -> int | None:
    """What a killed run folder must offer; returns the step of its last checkpoint (None: none yet)."""
    info = json.loads((run / "run.json").read_text())  # whole: written atomically
    assert info["status"] in ("running", "interrupted")  # kill -9 leaves "running"
    text = (run / "metrics.jsonl").read_text() if (run / "metrics.jsonl").exists() else ""
    lines = text.split("\n")
    for line in lines[:-1]:  # whole lines; only the last may be torn
        json.loads(line)
    assert len(read_metrics(run / "metrics.jsonl")) >= len(lines) - 2
    (row,) = list_runs(run.parent)  # what `nncli runs` shows:
    want = "stopped" if info["status"] == "running" else info["status"]  # no process holds its lock
    assert row["status"] == want
    if not has_checkpoint(run / "checkpoints", "last"):
        return None
    ckpt = load_checkpoint(run / "checkpoints", "last")  # the newest complete save loads
    assert all(np.all(np.isfinite(w)) for w in ckpt.weights.values())
    ev = evaluate(run, None, "last")  # and `nncli eval` reads the folder
    assert ev["examples"] == 24 and np.isfinite(ev["loss"])
    return int(ckpt.state["step"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of CONFIG, started in the background so that it overlaps the kill test."""
    d = tmp_path_factory.mktemp("reference")
    proc = launch(write_config(d, CONFIG, "kill.yaml"), "--runs-dir", d / "runs", log=d / "stderr.txt")

    def done() -> Path:
        assert proc.wait(timeout=120) == 0, (d / "stderr.txt").read_text()
        return the_run(d / "runs")

    yield done
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    rng = np.random.default_rng(20261130)
    cfg, runs, log = write_config(tmp_path, CONFIG, "kill.yaml"), tmp_path / "runs", tmp_path / "stderr.txt"
    proc = launch(cfg, "--runs-dir", runs, log=log)
    wait_for(runs, proc)
    while not any((p / "run.json").exists() and not p.name.startswith(".") for p in runs.iterdir()):
        time.sleep(0.005)
    run = the_run(runs)
    kills, steps_seen, opened = 0, [], 0
    # each cycle kills either during start-up (a random moment after launch) or during training: a
    # few ms after the run passes a random step (rising from cycle to cycle, so that the run gets on
    # however fast this machine is), which lands anywhere in a checkpoint cycle
    targets = np.sort(rng.integers(20, 850, size=7))
    for early, target in zip(rng.random(7) < 0.3, targets):
        if early:
            time.sleep(rng.uniform(0.0, 0.8))
        else:
            if kills:
                wait_until_opened(run, proc, opened + 1)
            wait_until_step(run, proc, target)
            time.sleep(rng.uniform(0.0, 0.03))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        steps_seen.append(assert_readable_after_kill(run))
        opened = resumes(run)  # a process killed during start-up never got to record itself
        proc = launch("--resume", run, log=log)
    assert proc.wait(timeout=120) == 0, log.read_text()
    assert kills >= 5, f"the run finished after {kills} kills ({steps_seen}); the test needs a longer run"
    assert len({s for s in steps_seen if s is not None and 0 < s < 1000}) >= 3, steps_seen  # it got on

    straight = reference()
    same_weights(straight, run, "last")
    same_weights(straight, run, "best")
    assert no_times(read_metrics(run / "metrics.jsonl")) == no_times(read_metrics(straight / "metrics.jsonl"))
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and 1 <= len(info["resumes"]) <= kills
    assert info["resumes"][0]["previous_status"] == "running"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 1000
    assert not list((run / "checkpoints").glob(".*"))  # no staged or temp files left


def test_sigterm_checkpoints_exits_143_and_resumes_exactly(tmp_path, reference):
    cfg, runs, log = write_config(tmp_path, CONFIG, "kill.yaml"), tmp_path / "runs", tmp_path / "stderr.txt"
    proc = launch(cfg, "--runs-dir", runs, log=log)
    wait_for(runs, proc)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:  # late in the run: a short resume
        metrics = list(runs.glob("*/metrics.jsonl"))
        if metrics and any(r["step"] >= 600 for r in read_metrics(metrics[0])):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, log.read_text()
    run = the_run(runs)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and info["ended"]
    step = int(load_checkpoint(run / "checkpoints", "last").state["step"])
    assert 0 < step < 1000
    # the checkpoint is of the step where training stopped: nothing after it in the metrics
    assert max(r["step"] for r in read_metrics(run / "metrics.jsonl")) <= step
    done = run_nncli("train", "--resume", run, "--quiet", "--no-curves", timeout=120)
    assert done.code == 0, done.err
    same_weights(reference(), run)


# -- a second Ctrl-C while the checkpoint of the first is being written -----------------------------
SHORT = {**CONFIG, "train": {"steps": 40, "log_every": 4, "eval_every": 50, "checkpoint_every": 5}}


class CtrlCAt:
    """Sends this process a SIGINT after ``step``, as a user pressing Ctrl-C would."""

    def __init__(self, step):
        self.step = step

    def on_step(self, trainer):
        if trainer.state.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def second_ctrl_c_on_call(monkeypatch, module, name, n):
    """Patch ``module.name`` so that its ``n``-th call after the first Ctrl-C sends a second one."""
    real, calls = getattr(module, name), []

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        if wrapper.trainer.stop_request is not None:
            calls.append(args)
            if len(calls) == n:
                os.kill(os.getpid(), signal.SIGINT)  # the handler raises KeyboardInterrupt here
        return out

    monkeypatch.setattr(module, name, wrapper)
    return wrapper


@pytest.mark.parametrize("where", ["staging the sidecar", "staging the weights", "between the renames"])
def test_second_ctrl_c_during_the_checkpoint_does_not_corrupt_it(tmp_path, monkeypatch, where):
    import nncli.runs.atomic
    import nncli.runs.checkpoint

    cfg = write_config(tmp_path, SHORT, "kill.yaml")
    straight = prepare(cfg, [])
    assert run_session(straight, tmp_path / "a").exit_code == 0

    s = prepare(cfg, [])
    s.trainer.callbacks.append(CtrlCAt(22))  # not a checkpoint step: the last save was at 20
    if where == "between the renames":
        wrapper = second_ctrl_c_on_call(monkeypatch, nncli.runs.checkpoint.os, "replace", 1)
    else:
        wrapper = second_ctrl_c_on_call(
            monkeypatch, nncli.runs.atomic, "write_fully", 1 if where == "staging the sidecar" else 2
        )
    wrapper.trainer = s.trainer
    assert run_session(s, tmp_path / "b").exit_code == 130
    monkeypatch.undo()
    run = s.folder
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    ckpt = load_checkpoint(run / "checkpoints", "last")
    # interrupted before the commit point: the previous save; after it: the new one
    assert ckpt.state["step"] == (22 if where == "between the renames" else 20)
    if where != "between the renames":
        assert not list((run / "checkpoints").glob(".*"))  # staged files removed
    resumed = prepare_resume(run, None, [])
    assert run_session(resumed, tmp_path / "b").exit_code == 0
    same_weights(straight.folder, run)
    assert not list((run / "checkpoints").glob(".*"))


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path):
    cfg = write_config(tmp_path, SHORT, "kill.yaml")
    straight = prepare(cfg, [])
    assert run_session(straight, tmp_path / "a").exit_code == 0
    # what kill -9 right after the folder was made leaves: status running, no checkpoint, a torn line
    s = prepare(cfg, [])
    s.open(tmp_path / "b")
    s.release()  # the kernel does this for a killed process
    run = s.folder
    (run / "metrics.jsonl").write_text('{"event": "train", "step": 4, "train_loss": 1.0}\n{"event": "tr')
    (run / ".run.json.k1ll3d.tmp").write_text('{"status": "runn')  # an atomic write cut short
    assert assert_readable_after_kill(run) is None
    resumed = prepare_resume(run, None, [])
    assert resumed.trainer.state.step == 0
    assert run_session(resumed, tmp_path / "b").exit_code == 0
    assert not list(run.glob(".*.tmp"))
    same_weights(straight.folder, run)
    assert no_times(read_metrics(run / "metrics.jsonl")) == no_times(
        read_metrics(straight.folder / "metrics.jsonl")
    )


def test_resume_is_refused_while_another_process_trains_the_run(tmp_path):
    cfg = {**CONFIG, "train": {"steps": 10**6, "log_every": 1000, "eval_every": 10**6}}
    runs, log = tmp_path / "runs", tmp_path / "stderr.txt"
    proc = launch(write_config(tmp_path, cfg, "kill.yaml"), "--runs-dir", runs, log=log)
    try:
        wait_for(runs, proc)
        while not any((p / "run.json").exists() and not p.name.startswith(".") for p in runs.iterdir()):
            time.sleep(0.005)
        run = the_run(runs)
        with pytest.raises(
            RunError, match=rf"{run}: another process \(pid {proc.pid}\) is training this run"
        ):
            prepare_resume(run, None, [])
        assert proc.poll() is None and json.loads((run / "run.json").read_text())["status"] == "running"
    finally:
        proc.kill()
        proc.wait()
    s = prepare_resume(run, None, [])  # once it is gone (kill -9), the run can be resumed
    s.open(runs)
    s.release()
