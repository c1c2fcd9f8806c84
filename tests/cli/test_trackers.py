"""Trackers through the real CLI, read back with the trackers' own libraries: TensorBoard's event reader
and ``MlflowClient`` against a SQLite store in the test's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import assert_refused, merge, run_many, run_nncli, write_config

#: two evaluations and three train rows
EXTRA = {"name": "tiny", "data": {"val_split": 0.3}, "train": {"steps": 6, "eval_every": 3, "log_every": 2}}


def _train_call(folder, tiny_config, *loggers, env=None) -> dict:
    """``run_nncli`` arguments training the tiny config in ``folder`` (so that nothing the trackers
    write lands elsewhere) with ``loggers``."""
    config = write_config(folder, merge(tiny_config, EXTRA), "tiny.yaml")
    args = [a for name in loggers for a in ("--logger", name)]
    # matplotlib's second (curves.png) is not what these tests are about
    args += ["--runs-dir", folder / "runs", "--quiet", "--json", "--no-curves"]
    return dict(args=["train", config, *args], env=env, timeout=300, cwd=folder)


def _finished(res):
    """(run folder, metrics.jsonl rows) of a training that must have succeeded."""
    assert res.code == 0, res
    run = Path(json.loads(res.out)["run_dir"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return run, rows


def _train(folder, tiny_config, *loggers, env=None):
    call = _train_call(folder, tiny_config, *loggers, env=env)
    return _finished(run_nncli(*call.pop("args"), **call))


def _check_tensorboard(run, rows):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    evals = [r for r in rows if r["event"] == "eval"]
    trains = [r for r in rows if r["event"] == "train"]
    got = [(e.step, e.value) for e in acc.Scalars("eval/val_acc")]
    assert got == [(r["step"], pytest.approx(r["val_acc"], rel=1e-6)) for r in evals]
    assert [e.step for e in acc.Scalars("train/train_loss")] == [r["step"] for r in trains]
    assert "eval/train_loss_since_eval" in acc.Tags()["scalars"]
    (config,) = acc.Tensors("config")
    assert b"name: tiny" in config.tensor_proto.string_val[0]


def _check_mlflow(uri, run, rows):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tiny")
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.info.run_name == run.name and mrun.info.status == "FINISHED"
    assert mrun.data.params["optimizer.lr"] == "0.1" and mrun.data.params["model.layers.0.out"] == "8"
    history = client.get_metric_history(mrun.info.run_id, "val_acc")
    evals = [r for r in rows if r["event"] == "eval"]
    assert [(m.step, m.value) for m in history] == [(r["step"], pytest.approx(r["val_acc"])) for r in evals]
    artifacts = {a.path for a in client.list_artifacts(mrun.info.run_id)}
    assert {"config.yaml", "summary.json", "metrics.jsonl", "checkpoints"} <= artifacts
    ckpts = {Path(a.path).name for a in client.list_artifacts(mrun.info.run_id, "checkpoints")}
    assert "best.safetensors" in ckpts and "last.safetensors" in ckpts


def test_tensorboard_event_files_read_back(tmp_path, tiny_config):
    pytest.importorskip(
        "tensorboard", reason="--logger tensorboard needs tensorboard (pip install 'nncli[tensorboard]')"
    )
    run, rows = _train(tmp_path, tiny_config, "tensorboard")
    _check_tensorboard(run, rows)


@pytest.mark.slow
def test_mlflow_and_tensorboard_at_once_read_back(tmp_path, tiny_config):
    pytest.importorskip(
        "tensorboard", reason="--logger tensorboard needs tensorboard (pip install 'nncli[tensorboard]')"
    )
    pytest.importorskip("mlflow", reason="--logger mlflow needs mlflow (pip install 'nncli[mlflow]')")
    uri = f"sqlite:///{tmp_path / 'tracking.db'}"
    (tmp_path / "b").mkdir()
    # the two trainings at once (each spends seconds importing MLflow and creating its store)
    both = run_many(
        {
            "uri": _train_call(
                tmp_path, tiny_config, "mlflow", "tensorboard", env={"MLFLOW_TRACKING_URI": uri}
            ),
            # without MLFLOW_TRACKING_URI: SQLite beside the runs, in --runs-dir
            "default": _train_call(tmp_path / "b", tiny_config, "mlflow", env={"MLFLOW_TRACKING_URI": ""}),
        },
        workers=2,
    )
    run, rows = _finished(both["uri"])
    _check_mlflow(uri, run, rows)
    _check_tensorboard(run, rows)
    run, rows = _finished(both["default"])
    _check_mlflow(f"sqlite:///{tmp_path / 'b' / 'runs' / 'mlflow.db'}", run, rows)


def test_an_unknown_tracker_is_refused_before_any_folder(tmp_path, tiny_config):
    config = write_config(tmp_path, merge(tiny_config, EXTRA), "tiny.yaml")
    res = run_nncli("train", config, "--logger", "tensorbord", "--runs-dir", tmp_path / "runs")
    assert_refused(res, "did you mean 'tensorboard'", runs_dir=tmp_path / "runs")
