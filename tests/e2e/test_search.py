"""Searches on Optuna through the real CLI: TPE with pruning in a SQLite study, stopped with SIGINT and
resumed; one study served to two ``nncli sweep`` processes at once; the optimisation history plot."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import default_sigint, merge, write_config

from nncli.runs.sweeps.checks import SweepError
from nncli.runs.sweeps.params import parse_param, parse_params

optuna = pytest.importorskip("optuna", reason="searches need optuna (pip install 'nncli[search]')")

#: long enough (3000 steps, 10 evaluations) that a running trial is seen and pruned between evaluations
LONG = {
    "name": "tiny",
    "data": {"val_split": 0.3, "n_samples": 150, "batch_size": 30},
    "train": {"steps": 3000, "eval_every": 300, "log_every": 300, "best_metric": "val_acc"},
}
PARAMS = ["--param", "optimizer.lr=loguniform(1e-4,1.0)", "--param", "model.layers[0].out=choice(4,16)"]


def test_param_syntax_and_its_errors():
    p = parse_param("optimizer.lr=loguniform(1e-4, 1e-1)")
    assert (p.key, p.kind, p.args) == ("optimizer.lr", "loguniform", (1e-4, 1e-1))
    assert parse_param("model.layers[0].out=choice(64,128)").args == ("64", "128")
    assert parse_param("train.steps=int(10,20)").args == (10, 20)
    for bad, msg in [
        ("optimizer.lr", "expected path=distribution"),
        ("optimizer.lr=logunifrom(1,2)", "did you mean 'loguniform'"),
        ("optimizer.lr=uniform(1)", "two bounds"),
        ("optimizer.lr=uniform(2,1)", "low < high"),
        ("optimizer.lr=loguniform(0,1)", "low > 0"),
        ("train.steps=int(1.5,3)", "integers"),
        ("x=choice()", "needs values"),
    ]:
        with pytest.raises(SweepError, match=msg):
            parse_param(bad)
    with pytest.raises(SweepError, match="twice"):
        parse_params(["a=uniform(0,1)", "a=uniform(0,2)"])


def test_a_bad_param_path_is_refused_before_any_folder(tmp_path, tiny_config):
    config = write_config(tmp_path, merge(tiny_config, LONG), "tiny.yaml")
    res = subprocess.run(
        [sys.executable, "-m", "nncli", "sweep", str(config), "--search", "tpe", "--trials", "2",
         "--param", "optimizer.lrr=loguniform(1e-3,1e-1)", "--runs-dir", "runs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "did you mean 'optimizer.lr'" in res.stderr
    assert not (tmp_path / "runs").exists()
    res = subprocess.run(
        [sys.executable, "-m", "nncli", "sweep", str(config), "--search", "tpe", "--param",
         "optimizer.lr=loguniform(1e-3,1e-1)", "--dry-run", "--runs-dir", "runs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "--dry-run" in res.stderr and not (tmp_path / "runs").exists()
    res = subprocess.run(
        [sys.executable, "-m", "nncli", "sweep", str(config), "--search", "tpe", "--param",
         "optimizer.lr=loguniform(1e-3,1e-1)", "--metric", "val_acuracy", "--runs-dir", "runs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "--metric: unknown metric 'val_acuracy'" in res.stderr
    assert "did you mean 'val_acc'" in res.stderr and not (tmp_path / "runs").exists()


def _study(folder: Path):
    data = json.loads((folder / "sweep.json").read_text())
    s = data["search"]
    return data, optuna.load_study(study_name=s["study"], storage=s["storage"])


def _counted(study):
    from optuna.trial import TrialState

    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


@pytest.mark.slow
def test_tpe_search_prunes_is_stored_in_sqlite_and_resumes_after_sigint(tmp_path, tiny_config):
    config = write_config(tmp_path, merge(tiny_config, LONG), "tiny.yaml")
    cmd = [sys.executable, "-m", "nncli", "sweep", str(config), "--search", "tpe", "--trials", "12", *PARAMS,
           "--pruner", "median", "--runs-dir", "runs", "-j", "2"]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # stop it once a few trials have finished
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            hits = list(tmp_path.glob("runs/sweep-*/sweep.json"))
            if hits:
                trials = json.loads(hits[0].read_text())["trials"]
                if sum(t["status"] in ("completed", "pruned") for t in trials) >= 4:
                    break
            time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    (folder,) = tmp_path.glob("runs/sweep-*")
    assert (folder / "study.db").is_file()  # the study is in SQLite inside the sweep folder
    data, study = _study(folder)
    assert 4 <= len(_counted(study)) < 12
    res = subprocess.run(
        [sys.executable, "-m", "nncli", "sweep", "--resume", str(folder), "-j", "2", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data, study = _study(folder)
    counted = _counted(study)
    assert len(counted) == 12 and len({t.number for t in counted}) == 12
    pruned = [t for t in data["trials"] if t["status"] == "pruned"]
    assert pruned, [t["status"] for t in data["trials"]]
    assert all(Path(t["run_dir"]).is_dir() for t in data["trials"] if t["status"] in ("completed", "pruned"))
    assert data["search"]["best_trial"] is not None and "best trial" in res.stderr
    # the history of the search: nncli plot SWEEP_DIR
    plot = subprocess.run(
        [sys.executable, "-m", "nncli", "plot", str(folder), "--terminal"], capture_output=True, text=True
    )
    assert plot.returncode == 0 and "optimisation history" in plot.stdout, plot.stderr


@pytest.mark.slow
def test_two_processes_share_one_study_without_duplicates(tmp_path, tiny_config):
    config = write_config(tmp_path, merge(tiny_config, LONG), "tiny.yaml")
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = [sys.executable, "-m", "nncli", "sweep", str(config), "--search", "random", "--trials", "6", *PARAMS,
           "--pruner", "none", "--storage", storage, "--study", "shared", "--set", "train.steps=600"]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*cmd, "--runs-dir", f"runs{i}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = optuna.load_study(study_name="shared", storage=storage)
    counted = _counted(study)
    assert len(counted) == 6 and len({t.number for t in counted}) == 6
    runs = [p for i in range(2) for p in tmp_path.glob(f"runs{i}/sweep-*/t*")]
    assert len(runs) == 6 and len({r.name.split("-")[0] for r in runs}) == 6  # t000..t005, each once
    per_process = [len(list(tmp_path.glob(f"runs{i}/sweep-*/t*"))) for i in range(2)]
    assert all(n >= 1 for n in per_process), per_process  # both worked on it
