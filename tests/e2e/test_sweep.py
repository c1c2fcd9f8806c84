"""Sweeps: grid parsing and expansion, validation before anything runs, and real tiny sweeps
(parallel local processes and a local Ray instance giving the same results)."""

from __future__ import annotations

import json
import os
import re

import listening
import pytest
import yaml
from support import default_sigint, write_config

from nncli.runs.sweeps.checks import SweepError
from nncli.runs.sweeps.grid import expand, parse_grid, split_values
from nncli.runs.sweeps.grid_sweep import run_sweep
from nncli.runs.sweeps.record import rank
from nncli.runs.sweeps.trial import Trial

pytestmark = pytest.mark.slow  # whole sweeps of training runs

TINY = {
    "name": "tiny",
    "seed": 0,
    "model": {
        "input_shape": [2],
        "layers": [{"type": "MM", "out": 8}, {"type": "Tanh"}, {"type": "MM", "out": 3}],
    },
    "loss": "cross_entropy",
    "data": {"source": "spirals", "n_samples": 90, "batch_size": 30, "val_split": 0.3},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"steps": 6, "eval_every": 3, "log_every": 3, "best_metric": "val_acc"},
}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = write_config(tmp_path_factory.mktemp("cfg"), TINY, "tiny.yaml")
    return path


# -- the grid ----------------------------------------------------------------------------------------
def test_split_values_keeps_bracketed_lists_whole():
    assert split_values("0.1, 0.03") == ["0.1", "0.03"]
    assert split_values("[1,40],[1, 20]") == ["[1,40]", "[1, 20]"]
    assert split_values("{a: 1, b: 2},x") == ["{a: 1, b: 2}", "x"]


def test_parse_grid_and_its_errors():
    assert parse_grid(["optimizer.lr=0.1,0.03", "model.layers[0].out=64"]) == [
        ("optimizer.lr", ["0.1", "0.03"]),
        ("model.layers[0].out", ["64"]),
    ]
    for bad, msg in [
        ("optimizer.lr", "expected path=value1"),
        ("=1,2", "expected path=value1"),
        ("optimizer.lr=0.1,", "empty value"),
        ("seed=1,2", "--seeds"),
    ]:
        with pytest.raises(SweepError, match=msg):
            parse_grid([bad])
    with pytest.raises(SweepError, match="given twice"):
        parse_grid(["a=1", "a=2"])


def test_expand_is_the_full_product_times_seeds():
    grid = parse_grid(["optimizer.lr=0.1,0.03", "model.layers[0].out=64,128,256"])
    trials = expand(grid, ["train.steps=5"], seeds=[7, 8])
    assert len(trials) == 2 * 3 * 2
    assert len({t.name for t in trials}) == len(trials)
    first = trials[0]
    assert first.overrides == ["train.steps=5", "optimizer.lr=0.1", "model.layers[0].out=64", "seed=7"]
    assert first.name == "t00-lr0.1-out64-seed7"
    assert [t.seed for t in trials[:4]] == [7, 8, 7, 8]
    assert trials[-1].params == {"optimizer.lr": "0.03", "model.layers[0].out": "256"}
    assert [t.seed for t in expand(grid)] == [None] * 6


def test_rank_by_accuracy_and_by_loss_failed_last():
    def trial(i, value):
        return Trial(
            index=i,
            params={},
            seed=None,
            overrides=[],
            best=None if value is None else {"metric": "m", "value": value, "step": 1},
        )

    ts = [trial(0, 0.5), trial(1, None), trial(2, 0.9), trial(3, 0.7)]
    assert [t.index for t in rank(ts, "val_acc")] == [2, 3, 0, 1]
    assert [t.index for t in rank(ts, "val_loss")] == [0, 3, 2, 1]


# -- validation before running ----------------------------------------------------------------------------
def test_invalid_grid_path_is_refused_before_anything_runs(tiny_config, tmp_path, capsys):
    from nncli.cli import main

    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "sweep",
                str(tiny_config),
                "--grid",
                "optimizer.lr=0.1,0.2",
                "--grid",
                "optimizer.lrr=0.1",
                "--runs-dir",
                str(runs),
            ]
        )
    assert exc.value.code == 2
    assert "did you mean 'optimizer.lr'" in capsys.readouterr().err
    assert not runs.exists()


def test_every_combination_is_validated(tiny_config, tmp_path):
    from nncli.core.errors import UserError

    with pytest.raises(UserError, match="optimizer.lr"):  # only the second value is bad
        run_sweep(tiny_config, ["optimizer.lr=0.1,-1"], runs_dir=tmp_path)
    # a shape error appears only when the model is built: the message names the combination
    with pytest.raises(
        UserError, match=r"MM.*\(in the grid combination optimizer.lr=0.1, model.input_shape=\[1,2\]\)"
    ):
        run_sweep(tiny_config, ["optimizer.lr=0.1", "model.input_shape=[2],[1,2]"], runs_dir=tmp_path)
    with pytest.raises(SweepError, match="unknown backend"):
        run_sweep(tiny_config, ["optimizer.lr=0.1"], backend="slurm", runs_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "metric,message",
    [
        ("val_accuracy", "is logged as 'val_acc'; write that"),
        ("val_r2", "r2 is a regression metric"),
        ("test_acc", "test metrics are computed once, at the end"),
        ("val_confusion_matrix", "a matrix, not a number"),
        ("val_f1_macro", "the trials do not log val_f1_macro: add f1_macro to the config's metrics"),
    ],
)
def test_a_rank_metric_the_trials_cannot_log_is_refused_before_anything_runs(
    tiny_config, tmp_path, metric, message
):
    from nncli.core.errors import UserError

    with pytest.raises(UserError, match=re.escape(message)) as exc:
        run_sweep(tiny_config, ["optimizer.lr=0.1,0.2"], metric=metric, runs_dir=tmp_path)
    assert exc.value.field == "--metric"
    assert list(tmp_path.iterdir()) == []


def test_a_rank_metric_the_trials_log_is_accepted(tiny_config, tmp_path):
    grid = ["optimizer.lr=0.1,0.2"]
    assert (
        run_sweep(tiny_config, grid, metric="train_loss", dry_run=True, runs_dir=tmp_path).metric
        == "train_loss"
    )
    sweep = run_sweep(
        tiny_config,
        grid,
        sets=["metrics=[acc,f1_macro]"],
        metric="val_f1_macro",
        dry_run=True,
        runs_dir=tmp_path,
    )
    assert sweep.metric == "val_f1_macro"


def test_dry_run_lists_combinations(tiny_config, tmp_path):
    sweep = run_sweep(tiny_config, ["optimizer.lr=0.1,0.2"], seeds=2, dry_run=True, runs_dir=tmp_path)
    assert [t.overrides for t in sweep.trials] == [
        ["optimizer.lr=0.1", "seed=0"],
        ["optimizer.lr=0.1", "seed=1"],
        ["optimizer.lr=0.2", "seed=0"],
        ["optimizer.lr=0.2", "seed=1"],
    ]
    assert sweep.metric == "val_acc" and list(tmp_path.iterdir()) == []


# -- real sweeps ------------------------------------------------------------------------------------------
GRID = ["optimizer.lr=0.05,0.5"]


@pytest.fixture(scope="module")
def local_sweep(tiny_config, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return run_sweep(tiny_config, GRID, jobs=2, runs_dir=runs), runs


def _check_sweep(sweep, runs):
    from pathlib import Path

    folder = Path(sweep.folder)
    assert folder.parent == runs and folder.name.startswith("sweep-tiny-")
    data = json.loads((folder / "sweep.json").read_text())
    assert data["grid"] == {"optimizer.lr": ["0.05", "0.5"]} and data["metric"] == "val_acc"
    assert len(data["trials"]) == 2
    for t, lr in zip(data["trials"], (0.05, 0.5)):
        assert t["status"] == "completed" and t["returncode"] == 0, t["error"]
        run = Path(t["run_dir"])
        assert run.parent == folder and run.name.startswith(t["name"])
        assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["lr"] == lr
        assert t["best"]["metric"] == "val_acc" and 0.0 <= t["best"]["value"] <= 1.0
        assert t["summary"]["steps"] == 6
        assert not (run / "curves.png").exists()  # trials skip it; `nncli plot SWEEP_DIR` draws them all
    values = [data["trials"][i]["best"]["value"] for i in data["ranking"]]
    assert values == sorted(values, reverse=True)
    return data


def test_local_sweep_with_two_jobs(local_sweep):
    sweep, runs = local_sweep
    _check_sweep(sweep, runs)
    from nncli.runs.listing import list_runs

    rows = list_runs(runs)  # `nncli runs` sees the trials inside the sweep folder
    assert sorted(r["run"].split("-")[0] for r in rows) == ["t00", "t01"]


def test_combinations_average_the_seeds():
    from nncli.runs.sweeps.record import Sweep

    def trial(i, lr, seed, value):
        return Trial(
            index=i,
            params={"optimizer.lr": lr},
            seed=seed,
            overrides=[],
            best=None if value is None else {"metric": "val_acc", "value": value, "step": 1},
        )

    sweep = Sweep(
        config="c.yaml",
        grid=[("optimizer.lr", ["0.1", "0.5"])],
        seeds=[0, 1],
        metric="val_acc",
        trials=[
            trial(0, "0.1", 0, 0.6),
            trial(1, "0.1", 1, 0.8),
            trial(2, "0.5", 0, 0.9),
            trial(3, "0.5", 1, None),
        ],
    )
    combos = sweep.combinations()
    assert [c["params"]["optimizer.lr"] for c in combos] == ["0.5", "0.1"]
    assert combos[0]["mean"] == 0.9 and (combos[0]["n"], combos[0]["trials"]) == (1, 2)
    assert combos[1]["mean"] == pytest.approx(0.7) and combos[1]["std"] == pytest.approx(0.1)
    assert sweep.to_json()["ranking"] == [2, 1, 0, 3]


def test_sigterm_stops_running_trials_and_starts_no_more(tiny_config, tmp_path):
    import os
    import signal
    import threading
    import time
    from pathlib import Path

    def interrupt(signum, frame):  # never let a late or early SIGTERM end pytest itself
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(tiny_config, ["optimizer.lr=0.1,0.2"], sets=["train.steps=100000"], runs_dir=tmp_path)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - started < 60
    folder = next(tmp_path.iterdir())
    data = json.loads((folder / "sweep.json").read_text())
    first, second = data["trials"]
    assert (first["status"], first["returncode"]) == ("interrupted", 130)  # stopped at a checkpoint
    assert json.loads((Path(first["run_dir"]) / "run.json").read_text())["status"] == "interrupted"
    assert second["status"] == "pending" and second["run_dir"] is None  # never started
    assert [p.name for p in folder.iterdir() if p.is_dir()] == [Path(first["run_dir"]).name]


@pytest.mark.slow
def test_a_sweep_stopped_with_ctrl_c_resumes_where_it_stopped(tiny_config, tmp_path):
    """Through the real CLI: SIGINT while two trials run and one waits; --resume finishes all three,
    continuing the stopped ones in their own run folders from their checkpoints."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    sets = ["--set", "train.steps=15000", "--set", "train.eval_every=1000", "--set", "train.log_every=500"]
    cmd = [sys.executable, "-m", "nncli", "sweep", str(tiny_config), "--grid", "optimizer.lr=0.05,0.1,0.2"]
    proc = subprocess.Popen(
        [*cmd, *sets, "--runs-dir", "runs", "-j", "2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("runs/sweep-*/t0*/metrics.jsonl"))) < 2 or any(
            p.stat().st_size == 0 for p in tmp_path.glob("runs/sweep-*/t0*/metrics.jsonl")
        ):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C at the terminal does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "nncli sweep --resume" in err
    (folder,) = tmp_path.glob("runs/sweep-*")
    data = json.loads((folder / "sweep.json").read_text())
    assert [t["status"] for t in data["trials"]] == ["interrupted", "interrupted", "pending"]
    stopped = [t["run_dir"] for t in data["trials"][:2]]
    res = subprocess.run(
        [sys.executable, "-m", "nncli", "sweep", "--resume", str(folder.relative_to(tmp_path)), "-j", "2", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [t["status"] for t in data["trials"]] == ["completed"] * 3
    assert [t["run_dir"] for t in data["trials"][:2]] == stopped  # continued, not started again
    assert all(t["summary"]["steps"] == 15000 for t in data["trials"])
    assert len([p for p in folder.iterdir() if p.is_dir()]) == 3
    assert all((Path(r) / "checkpoints" / "last.safetensors").exists() for r in stopped)


# -- nncli's own local Ray instance (last in the module, so that it is shut down as the module ends) ----
@pytest.fixture(scope="module")
def local_ray():
    """The local instance that ``--backend ray`` starts without ``--ray-address`` (2 CPUs), started once
    through nncli's own ``connect`` for the tests below and shut down by it after them."""
    pytest.importorskip("ray", reason="--backend ray needs ray (pip install 'nncli[ray]')")
    from nncli.runs.sweeps.ray_tasks import connect

    with connect(None, 2) as ray:
        yield ray


def test_ray_sweep_gives_the_same_results(local_ray, local_sweep, tiny_config, tmp_path):
    local, _ = local_sweep
    sweep = run_sweep(tiny_config, GRID, jobs=2, backend="ray", runs_dir=tmp_path)
    data = _check_sweep(sweep, tmp_path)
    assert data["backend"] == "ray"
    for a, b in zip(local.trials, sweep.trials):
        assert a.best == b.best
        assert a.summary["final"]["val_loss"] == b.summary["final"]["val_loss"]


def test_the_local_ray_instance_listens_on_loopback_only(local_ray, tmp_path):
    if not listening.available():
        pytest.skip("reads listening sockets from Linux's /proc/net tables")
    from nncli.runs.sweeps.ray_tasks import run_ray_one

    # one task through nncli's dispatch, so that Ray's worker processes are up and serving
    code, out, err = run_ray_one(["--version"], False, 2, lambda: False, str(tmp_path))
    assert code == 0 and out.startswith("nncli"), err
    tree = listening.process_tree(os.getpid())  # this driver, and Ray's processes it started
    sockets = listening.listening_sockets(tree)
    owners = {name for _, name, _, _ in sockets}
    # the scan does see every kind of Ray server: GCS, raylet, a worker's and this driver's gRPC servers
    assert {"gcs_server", "raylet"} <= owners, sockets
    assert any(name.startswith("ray::") for name in owners), sockets
    assert os.getpid() in {pid for pid, _, _, _ in sockets}, sockets
    exposed = [s for s in sockets if not listening.is_loopback(s[2])]
    assert not exposed, f"listening beyond this machine (pid, process, address, port): {exposed}"
