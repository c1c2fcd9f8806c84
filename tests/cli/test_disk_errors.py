"""Full disks and unwritable folders: refused before training where that can be known (exit 2, nothing
written), else a one-line error that keeps the last good checkpoint loadable (exit 1)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from support import run_main, run_nncli, write_config

import nncli.runs.atomic
import nncli.runs.folder.metrics_log
import nncli.runs.session.preflight
from nncli.cli import main
from nncli.runs.checkpoint import load_checkpoint, load_weights, state_path, weights_path
from nncli.runs.session.preflight import bytes_needed
from nncli.runs.session.prepare import prepare
from nncli.runs.session.resume import prepare_resume
from nncli.runs.train_run import run_session

CONFIG = {
    "name": "disk",
    "seed": 2,
    "dtype": "float64",
    "model": {
        "input_shape": [2],
        "layers": [{"type": "MM", "out": 8}, {"type": "Tanh"}, {"type": "MM", "out": 3}],
    },
    "data": {"source": "spirals", "n_samples": 90, "batch_size": 12, "val_split": 0.2},
    "optimizer": {"type": "adam", "lr": 0.02},
    "train": {"steps": 30, "log_every": 3, "eval_every": 10, "checkpoint_every": 5},
}


@pytest.fixture
def cfg(tmp_path) -> Path:
    return write_config(tmp_path, CONFIG, "disk.yaml")


def train(cfg: Path, runs: Path, capsys) -> tuple[int, str]:
    """``nncli train`` in this process: (exit code, stderr)."""
    code, _, err = run_main("train", cfg, "--runs-dir", runs, "--quiet")
    return code, err


def full_disk_after(monkeypatch, n_ok: int, persistent: bool):
    """Let ``n_ok`` whole-file writes succeed, then fail the next one half way with ENOSPC."""
    real, calls = nncli.runs.atomic.write_fully, []

    def write(fh, data):
        calls.append(str(fh.name))
        if len(calls) == n_ok + 1 or (persistent and len(calls) > n_ok):
            fh.write(data[: len(data) // 2])  # the disk fills up mid-write
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fh, data)

    monkeypatch.setattr(nncli.runs.atomic, "write_fully", write)
    return calls


def count_writes_until_step(cfg: Path, tmp_path: Path, step: int) -> int:
    """How many whole-file writes a run makes before its checkpoint of ``step``."""
    calls = []
    real = nncli.runs.atomic.write_fully

    def write(fh, data):
        calls.append(str(fh.name))
        real(fh, data)

    nncli.runs.atomic.write_fully = write
    try:
        s = prepare(cfg, [])
        run_session(s, tmp_path / "count")
    finally:
        nncli.runs.atomic.write_fully = real
    saves = [i for i, name in enumerate(calls) if name.endswith("last.state.safetensors.pending")]
    ckpt_steps = [5, 10, 15, 20, 25, 30]  # checkpoint_every 5; evaluations at 10, 20, 30 also save
    return saves[ckpt_steps.index(step)]


@pytest.mark.parametrize("persistent", [False, True], ids=["one-write-fails", "disk-stays-full"])
@pytest.mark.parametrize("part", ["sidecar", "weights"])
def test_enospc_mid_checkpoint_keeps_the_last_good_one(cfg, tmp_path, monkeypatch, capsys, part, persistent):
    n_ok = count_writes_until_step(cfg, tmp_path, 15) + (part == "weights")
    full_disk_after(monkeypatch, n_ok, persistent)
    code, err = train(cfg, tmp_path / "runs", capsys)
    monkeypatch.undo()
    (run,) = (tmp_path / "runs").iterdir()
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and ".last." in err and "(step 10) is kept" in err, err
    assert f"nncli train --resume {run}" in err, err
    ckpt = load_checkpoint(run / "checkpoints", "last")  # the previous save still loads
    assert ckpt.state["step"] == 10
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.safetensors",
        "best.state.safetensors",
        "last.safetensors",
        "last.state.safetensors",
    ]
    info = json.loads((run / "run.json").read_text())
    if persistent:  # run.json could not be rewritten either: it still says running
        assert info["status"] == "running"
    else:
        assert info["status"] == "failed" and "No space left on device" in info["error"]
    # once there is room again, the run continues from step 10 and ends as an unbroken run does
    resumed = prepare_resume(run, None, [])
    assert resumed.trainer.state.step == 10
    assert run_session(resumed, tmp_path / "runs").exit_code == 0
    straight = prepare(cfg, [])
    run_session(straight, tmp_path / "straight")
    a = load_weights(weights_path(run / "checkpoints", "last"))[0]
    b = load_weights(weights_path(straight.folder / "checkpoints", "last"))[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)


class FillsUp:
    """A file object that accepts ``room`` writes, then fails with ENOSPC."""

    def __init__(self, fh, room: int):
        self.fh, self.room = fh, room

    def write(self, text):
        self.room -= 1
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.fh.write(text)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def test_enospc_in_metrics_is_one_line_exit_1(cfg, tmp_path, monkeypatch, capsys):
    real_init = nncli.runs.folder.metrics_log.MetricsLog.__init__

    def init(self, path):
        real_init(self, path)
        self._fh = FillsUp(self._fh, room=5)  # lines for steps 3, 6, 9, 10 (eval) and 12

    monkeypatch.setattr(nncli.runs.folder.metrics_log.MetricsLog, "__init__", init)
    code, err = train(cfg, tmp_path / "runs", capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "metrics.jsonl: No space left on device" in err and "training stopped at step 15" in err, err
    assert "(step 10) is kept" in err, err
    (run,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(run / "checkpoints", "last").state["step"] == 10
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6, 9, 10, 12]


def test_not_enough_free_space_is_refused_before_anything_is_written(cfg, tmp_path, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        nncli.runs.session.preflight.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 5000, 5000)
    )
    code, err = train(cfg, tmp_path / "runs", capsys)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert "not enough free disk space" in err and str(tmp_path / "runs") in err
    assert not (tmp_path / "runs").exists()


def test_the_space_estimate_covers_the_real_checkpoints(cfg, tmp_path):
    s = prepare(cfg, [])
    need, ckpt = bytes_needed(s.trainer, new_run=True)
    assert run_session(s, tmp_path / "runs").exit_code == 0
    folder = s.folder / "checkpoints"
    real = weights_path(folder, "last").stat().st_size + state_path(folder, "last").stat().st_size
    assert real <= ckpt < real + 2 * nncli.runs.session.preflight.HEADER_BYTES
    used = sum(p.stat().st_size for p in s.folder.rglob("*") if p.is_file())
    assert used + 2 * real <= need  # the run's files plus the staged copies of one save


def test_disk_full_while_creating_the_run_folder_leaves_nothing(cfg, tmp_path, monkeypatch, capsys):
    full_disk_after(monkeypatch, 0, persistent=True)
    code, err = train(cfg, tmp_path / "runs", capsys)
    assert code == 2 and "cannot write a run folder there" in err and "No space left" in err, err
    assert list((tmp_path / "runs").iterdir()) == []


def test_runs_dir_that_is_a_file_is_refused(cfg, tmp_path, capsys):
    (tmp_path / "runs").write_text("not a folder")
    code, err = train(cfg, tmp_path / "runs", capsys)
    assert code == 2 and "is not a folder" in err and str(tmp_path / "runs") in err, err
    code, err = train(cfg, tmp_path / "runs" / "sub", capsys)
    assert code == 2 and "cannot create the runs folder" in err, err


def lock_folder(folder: Path) -> bool:
    """Make ``folder`` unwritable for this user: mode 0555, or for root (whom modes do not stop) the
    immutable attribute. False when neither is possible here."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def unlock_folder(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    os.chmod(folder, 0o755)


def test_unwritable_runs_dir_exits_2_naming_it(cfg, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    if not lock_folder(runs):
        pytest.skip("cannot make a folder unwritable for this user here")
    try:
        code, _, err = run_nncli("train", cfg, "--runs-dir", runs)
        assert code == 2, err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert f"{runs}: cannot write a run folder there (" in err, err
        assert list(runs.iterdir()) == []
    finally:
        unlock_folder(runs)


def test_resume_into_an_unwritable_run_folder_exits_2(cfg, tmp_path, capsys):
    s = prepare(cfg, [])
    s.trainer.callbacks.append(
        type("Stop", (), {"on_step": lambda self, t: t.state.step == 12 and t.request_stop("SIGINT")})()
    )
    assert run_session(s, tmp_path / "runs").exit_code == 130
    run = s.folder
    files = lambda: {p.name: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != ".lock"}  # noqa: E731
    before = files()
    if not lock_folder(run / "checkpoints"):
        pytest.skip("cannot make a folder unwritable for this user here")
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--resume", str(run), "--quiet"])
    finally:
        unlock_folder(run / "checkpoints")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{run / 'checkpoints'}: cannot write in this run folder" in err, err
    assert files() == before  # untouched (bar the lock file, probed first)
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
