"""Divergence through the real command: stop (exit 3, the module named, last good checkpoint kept),
skip and ignore (``train.on_nonfinite``).

The chain is Flatten → Identity → MM → ReLU → MM. One training example is huge but finite
(±1.79e308, signs matching one row of the first MM's initial weights, whose |w|₁ > 1): the first two
modules pass it through unchanged, so the first non-finite value is the output of the 3rd module
(index 2, the MM, whose product overflows to +Inf). Without shuffling it sits in the 3rd batch of
every epoch, so the loss first becomes non-finite at step 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import run_main, write_config

from nncli.config.build import build_chain
from nncli.config.load import config_from_dict
from nncli.runs.checkpoint import load_checkpoint, load_weights, weights_path
from nncli.runs.folder.metrics_log import read_metrics

POISON_ROW, BATCH, N = 25, 10, 60
STEPS = 2 * N // BATCH  # two epochs of 6 steps; the poisoned batch is step 3 of each
CONFIG = {
    "name": "div",
    "seed": 1,
    "dtype": "float64",
    "model": {
        "input_shape": [4],
        "layers": [
            {"type": "Flatten"},
            {"type": "Identity"},
            {"type": "MM", "out": 16},
            {"type": "ReLU"},
            {"type": "MM", "out": 3},
        ],
    },
    "data": {
        "source": "data.npz",
        "batch_size": BATCH,
        "val_split": 0.0,
        "shuffle": False,
        "standardize": False,
    },
    "optimizer": {"type": "sgd", "lr": 0.01},
    "train": {"epochs": 2, "log_every": 1, "checkpoint_every": 1, "best_metric": "train_loss"},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("div")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, 4))
    w = build_chain(config_from_dict(CONFIG).config).modules[2].params["weight"]  # the run's initial MM
    row = int(np.argmax(np.abs(w).sum(axis=1)))
    assert np.abs(w[row]).sum() > 1.05  # so 1.79e308 · |w|₁ overflows, even after two small steps
    x[POISON_ROW] = 1.79e308 * np.sign(w[row])
    np.savez(d / "data.npz", x=x, y=rng.integers(0, 3, N))
    write_config(d, CONFIG, "div.yaml")
    return d


def train(work: Path, runs: str, capsys, *args: str) -> tuple[int, str, Path]:
    """``nncli train div.yaml`` in this process: (exit code, stderr, run folder)."""
    code, _, err = run_main("train", work / "div.yaml", "--runs-dir", work / runs, "--quiet", *args)
    (run,) = (work / runs).iterdir()
    return code, err, run


def weights(run: Path) -> dict[str, np.ndarray]:
    return load_weights(weights_path(run / "checkpoints", "last"))[0]


def test_stop_exits_3_names_the_3rd_module_and_keeps_the_last_good_checkpoint(work, capsys):
    code, err, run = train(work, "stop", capsys)
    assert code == 3, err
    assert err.strip().splitlines() == [
        "diverged: non-finite loss (nan) at step 3: forward output of module 2 (MM) is NaN/Inf; "
        "the last good checkpoint (step 2) is kept"
    ], err
    assert json.loads((run / "run.json").read_text())["status"] == "diverged"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps"] == 2 and "module 2 (MM)" in summary["reason"]
    # the kept checkpoint is step 2's: the same weights as a run that simply stops after 2 steps
    ckpt = load_checkpoint(run / "checkpoints", "last")
    assert ckpt.state["step"] == 2
    assert all(np.all(np.isfinite(w)) for w in ckpt.weights.values())
    _, _, two = train(work, "two", capsys, "--set", "train.steps=2")
    assert all(np.array_equal(weights(run)[k], w) for k, w in weights(two).items())
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]


def test_skip_leaves_out_the_bad_steps(work, capsys):
    code, err, run = train(work, "skip", capsys, "--set", "train.on_nonfinite=skip", "--json")
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS and summary["skipped_steps"] == 2
    assert all(np.all(np.isfinite(w)) for w in weights(run).values())
    train_lines = [r for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"]
    # the skipped steps have no loss of their own (null): they were not trained on
    assert [r["step"] for r in train_lines if r["train_loss"] is None] == [3, 9]
    assert all(np.isfinite(r["train_loss"]) for r in train_lines if r["step"] not in (3, 9))


def test_ignore_trains_on_and_shows_the_nan(work, capsys):
    code, err, run = train(work, "ignore", capsys, "--set", "train.on_nonfinite=ignore")
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS and summary["skipped_steps"] == 0
    # the update spread the Inf into the weights, but no checkpoint is written from them: `last` is
    # the step before, and the summary says which step it holds
    assert all(np.all(np.isfinite(w)) for w in weights(run).values())
    assert summary["checkpoint_step"] == 2
    losses = {
        r["step"]: r["train_loss"] for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"
    }
    assert losses[1] is not None and losses[2] is not None and losses[3] is None and losses[STEPS] is None
