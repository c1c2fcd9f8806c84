"""`nncli train` / `nncli eval` through the real command line, in subprocesses.

Each bad input must exit 2 with one line on stderr that names the problem and where it is, no
traceback, and leave no run folder behind. The bad-input processes are forked from one that has
imported nncli (``forked_cli``), a few at a time, so the interpreter start-up cost is paid once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from forked_cli import run_forked
from support import run_many, start_nncli, write_config

GOOD = {
    "name": "cli",
    "seed": 0,
    "model": {
        "input_shape": [4],
        "layers": [{"type": "MM", "out": 6}, {"type": "ReLU"}, {"type": "MM", "out": 3}],
    },
    "loss": "cross_entropy",
    "data": {"source": "data.npz", "batch_size": 10, "val_split": 0.2, "test_split": 0.2},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"epochs": 2, "log_every": 2},
}


def nncli(*args, cwd=None):
    return start_nncli(*args, cwd=cwd, env={"COLUMNS": "200"})


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def edit(cfg: dict, path: str, value):
    cfg = json.loads(json.dumps(cfg))
    *head, last = path.split(".")
    node = cfg
    for k in head:
        node = node[k]
    node[last] = value
    return cfg


# (name, config changes or a file to write, extra argv, text the error must contain)
CASES = [
    ("missing data file", {"data.source": "nope.npz"}, [], "nope.npz"),
    ("malformed data file", {"data.source": "broken.npz"}, [], "broken.npz"),
    ("labels outside the loss's range", {"data.source": "badlabels.npz"}, [], "labels"),
    ("data shape not matching the model", {"model.input_shape": [5]}, [], "input_shape"),
    ("negative lr", {"optimizer.lr": -0.1}, [], "optimizer.lr"),
    ("unknown optimizer", {"optimizer.type": "adamw"}, [], "optimizer.type"),
    ("unknown schedule", {"schedule": {"type": "cosinus"}}, [], "schedule.type"),
    ("misspelled --set path", {}, ["--set", "optimizer.lrr=0.1"], "lrr"),
    ("resume on a non-run folder", None, ["--resume", "notarun"], "not a run folder"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4))
    np.savez(d / "data.npz", x=x, y=rng.integers(0, 3, 50))
    np.savez(d / "badlabels.npz", x=x, y=rng.integers(0, 3, 50) + 5)
    (d / "broken.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (d / "notarun").mkdir()
    write_config(d, GOOD, "good.yaml")
    return d


@pytest.fixture(scope="module")
def bad_runs(workdir):
    calls, folders = {}, {}
    for i, (name, change, argv, _) in enumerate(CASES):
        cfg = GOOD
        for path, value in (change or {}).items():
            cfg = edit(cfg, path, value)
        cfg_file = write_config(workdir, cfg, f"bad{i}.yaml")
        runs = workdir / f"runs{i}"
        first = [] if change is None else [cfg_file]
        calls[name] = dict(
            args=["train", *first, "--runs-dir", runs, *argv], cwd=workdir, env={"COLUMNS": "200"}
        )
        folders[name] = runs
    done = run_many(calls, run=run_forked)
    return {name: (*done[name], folders[name]) for name in calls}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_no_run_folder(bad_runs, case):
    name, _, _, expect = case
    code, out, err, runs = bad_runs[name]
    assert code == 2, err
    assert "Traceback" not in err and expect in err, err
    assert err.strip().startswith("error:")
    assert not runs.exists() or not any(runs.iterdir())


def test_train_json_eval_and_resume_refusal(workdir):
    code, out, err = finish(nncli("train", "good.yaml", "--runs-dir", "runs_ok", "--json", cwd=workdir))
    assert code == 0, err
    summary = json.loads(out)  # stdout holds only the JSON
    assert summary["status"] == "completed" and summary["test"]["acc"] is not None
    run = Path(summary["run_dir"])
    assert "run folder:" in err and "step" in err  # plain progress lines: stderr is not a terminal

    # eval on the test split, then on a file of one's own (standardised with the run's statistics)
    code, out, err = finish(nncli("eval", run, "--checkpoint", "last", "--json", cwd=workdir))
    assert code == 0, err
    ev = json.loads(out)
    assert ev["split"] == "test" and ev["acc"] == pytest.approx(summary["test"]["acc"])
    code, out, err = finish(nncli("eval", run, "--data", "data.npz", "--json", cwd=workdir))
    assert code == 0 and json.loads(out)["examples"] == 50, err

    # a completed run, and a different config, are refused without touching the folder
    before = sorted(p.name for p in run.iterdir())
    write_config(workdir, edit(GOOD, "optimizer.lr", 0.5), "changed.yaml")  # never used below
    code, _, err = finish(nncli("train", "--resume", run, cwd=workdir))
    assert code == 2 and "already completed" in err and "Traceback" not in err
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in run.iterdir()) == before


def test_divergence_exits_3_and_names_a_module(workdir):
    code, out, err = finish(
        nncli(
            "train",
            "good.yaml",
            "--runs-dir",
            "runs_div",
            "--quiet",
            "--set",
            "optimizer.lr=1e30",
            cwd=workdir,
        )
    )
    assert code == 3, err
    assert "diverged" in err and "module" in err and "(MM)" in err
    (run,) = (workdir / "runs_div").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "diverged"
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"


def test_resume_with_changed_config_is_refused(workdir):
    cfg = edit(GOOD, "train", {"steps": 6, "log_every": 2, "eval_every": 2})
    write_config(workdir, cfg, "short.yaml")
    code, out, err = finish(
        nncli("train", "short.yaml", "--runs-dir", "runs_rc", "--quiet", "--no-curves", cwd=workdir)
    )
    (run,) = (workdir / "runs_rc").iterdir()
    # pretend it was interrupted, so that only the config check can refuse it
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    other = write_config(workdir, edit(cfg, "optimizer.lr", 0.3), "other.yaml")
    code, _, err = finish(nncli("train", other, "--resume", run, cwd=workdir))
    assert code == 2 and "optimizer.lr: 0.1 → 0.3" in err and "Traceback" not in err, err
    code, _, err = finish(nncli("train", "--resume", run, "--set", "seed=5", cwd=workdir))
    assert code == 2 and "seed: 0 → 5" in err, err
