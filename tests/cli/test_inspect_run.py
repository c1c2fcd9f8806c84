"""`nncli inspect --run RUN --trace`: a trained run traced with its checkpoint's weights on a batch of its
own data, through the real CLI; a bad run folder, checkpoint or combination is one line and exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from forked_cli import run_forked
from support import assert_refused, folder_listing, run_many, run_nncli, write_config

# no dropout, no BatchNorm: training mode computes what eval does, so the trace's J on the whole
# validation split is the validation loss that `nncli eval` reports
CONFIG = {
    "name": "tr",
    "seed": 1,
    "dtype": "float64",
    "model": {
        "input_shape": [4],
        "layers": [{"type": "MM", "out": 8}, {"type": "Tanh"}, {"type": "MM", "out": 3}],
    },
    "data": {"source": "data.npz", "val_split": 0.25, "batch_size": 16},
    "optimizer": {"type": "adam", "lr": 0.05},
    "train": {"steps": 12, "eval_every": 4},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inspect_run")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    np.savez(folder / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1))
    res = run_nncli(
        "train", write_config(folder, CONFIG), "--runs-dir", folder / "runs", "--quiet", "--no-curves"
    )
    assert res.code == 0, res
    (run,) = (folder / "runs").iterdir()
    return run


def trace_of(res) -> dict:
    assert res.code == 0, res
    return json.loads(res.out)["trace"]


def test_trace_of_a_trained_run_uses_its_weights_and_data(trained):
    before = folder_listing(trained)
    r = run_many(
        {
            "val": {"args": ["inspect", "--run", trained, "--trace", "--json", "--batch", 1000]},
            "eval": {"args": ["eval", trained, "--json"]},
            "last": {
                "args": ["inspect", "--run", trained, "--trace", "--json", "--checkpoint", "last"]
                + ["--split", "train", "--order", "backward"]
            },
            "text": {"args": ["inspect", "--run", trained, "--trace"]},
        }
    )
    val, last = trace_of(r["val"]), trace_of(r["last"])
    assert "20 examples of the validation split" in val["batch"], val["batch"]
    assert "checkpoint (step" in val["batch"] and "training mode" in val["batch"]
    assert r["eval"].code == 0, r["eval"]
    evaluated = json.loads(r["eval"].out)
    assert evaluated["split"] == "val" and evaluated["examples"] == 20
    assert val["loss"] == pytest.approx(evaluated["loss"], rel=1e-12)  # the checkpoint's weights
    assert val["modules"][-1]["name"] == "loss" and val["modules"][-1]["dz"]["norm"] > 0
    assert "16 examples of the training split" in last["batch"], last["batch"]
    assert "last checkpoint (step 12)" in last["batch"]
    assert [m["name"] for m in last["modules"]] == ["loss", "2", "1", "0"]
    assert r["text"].code == 0 and "validation split" in r["text"].out, r["text"]
    assert folder_listing(trained) == before  # inspecting a run only reads it


def test_bad_runs_and_combinations_are_one_line_exit_2(trained, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    for f in (broken / "checkpoints").iterdir():
        f.unlink()
    nodata = tmp_path / "nodata"  # its data file has gone (the saved config names it by absolute path)
    shutil.copytree(trained, nodata)
    saved = (nodata / "config.yaml").read_text()
    data = str(trained.parent.parent / "data.npz")
    assert data in saved
    (nodata / "config.yaml").write_text(saved.replace(data, str(tmp_path / "gone.npz")))
    cfg = write_config(tmp_path, CONFIG)
    cases = {
        "missing": (["--run", tmp_path / "nope", "--trace"], "no such run folder"),
        "not a run": (["--run", tmp_path, "--trace"], "not a run folder"),
        "checkpoint": (["--run", trained, "--trace", "--checkpoint", "first"], "'best' or 'last'"),
        "no weights": (["--run", broken, "--trace"], "last.safetensors"),
        "no data": (["--run", nodata, "--trace"], "gone.npz"),
        "both": ([cfg, "--run", trained, "--trace"], "not both"),
        "set": (["--run", trained, "--trace", "--set", "seed=2"], "--set cannot change"),
        "split": (["--run", trained, "--trace", "--split", "test"], "--split"),
        "checkpoint alone": ([cfg, "--checkpoint", "last"], "--checkpoint needs --run"),
    }
    results = run_many({k: {"args": ["inspect", *args]} for k, (args, _) in cases.items()}, run=run_forked)
    for key, (_, expected) in cases.items():
        assert_refused(results[key], expected)
