"""The training loop: determinism, logging cadence, early stopping, clipping, non-finite handling."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from support import merge, write_config

from nncli.cli import main
from nncli.config.build import build_chain
from nncli.config.load import config_from_dict
from nncli.runs.folder.metrics_log import read_metrics
from nncli.training.data_seeds import epoch_permutation
from nncli.training.loop import Trainer, locate_nonfinite
from nncli.training.optimizers import make_optimizer

BASE = {
    "name": "tiny",
    "seed": 3,
    "model": {
        "input_shape": [2],
        "layers": [
            {"type": "MM", "out": 8},
            {"type": "Tanh"},
            {"type": "Dropout", "p": 0.2},
            {"type": "MM", "out": 3},
        ],
    },
    "data": {"source": "spirals", "n_samples": 120, "batch_size": 16, "val_split": 0.2},
    "optimizer": {"type": "adam", "lr": 0.02},
    "train": {"epochs": 3, "log_every": 2},
}


def tiny_run_config(tmp_path: Path, extra: dict | None = None, name: str = "c.yaml") -> Path:
    return write_config(tmp_path, merge(BASE, extra or {}), name)


def train(tmp_path: Path, cfg: Path, *args: str) -> Path:
    runs = tmp_path / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    main(["train", str(cfg), "--runs-dir", str(runs), "--quiet", *args])
    (new,) = set(runs.iterdir()) - before
    return new


def no_times(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def trainer(extra: dict | None = None, train_x=None):
    cfg = config_from_dict(merge(BASE, extra or {})).config
    chain = build_chain(cfg)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 2)) if train_x is None else train_x
    y = rng.integers(0, 3, len(x))
    tr = SimpleNamespace(x=x, y=y)
    va = SimpleNamespace(x=rng.standard_normal((20, 2)), y=rng.integers(0, 3, 20))
    return Trainer(cfg, chain, tr, va, make_optimizer(cfg.optimizer, chain), epoch_permutation)


def test_same_seed_same_metrics_and_a_different_seed_differs(tmp_path):
    cfg = tiny_run_config(tmp_path)
    a, b = train(tmp_path, cfg), train(tmp_path, cfg)
    ma, mb = read_metrics(a / "metrics.jsonl"), read_metrics(b / "metrics.jsonl")
    assert ma and no_times(ma) == no_times(mb)
    c = train(tmp_path, cfg, "--set", "seed=4")
    assert no_times(read_metrics(c / "metrics.jsonl")) != no_times(ma)


def test_run_folder_contents(tmp_path):
    run = train(tmp_path, tiny_run_config(tmp_path), "--set", "optimizer.lr=0.01", "--name", "named")
    assert run.name.startswith("named-")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["overrides"] == ["optimizer.lr=0.01"]
    assert set(info["versions"]) == {"nncli", "numpy", "python"} and info["ended"]
    assert info["data"]["standardization"]["mean"] and info["data"]["sizes"]["val"] == 24
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["optimizer"]["lr"] == 0.01 and resolved["schedule"]["type"] == "constant"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 * math.ceil(96 / 16) and summary["param_count"] == 2 * 8 + 8 + 8 * 3 + 3
    assert summary["best"]["metric"] == "val_loss" and 0 <= summary["final"]["val_acc"] <= 1
    for name in ("last", "best"):
        assert (run / "checkpoints" / f"{name}.safetensors").is_file()
        assert (run / "checkpoints" / f"{name}.state.safetensors").is_file()


def test_logging_and_evaluation_cadence_and_schedule(tmp_path):
    run = train(
        tmp_path,
        tiny_run_config(
            tmp_path,
            {
                "train": {"epochs": None, "steps": 11, "log_every": 3, "eval_every": 4},
                "schedule": {"type": "step", "step_size": 2, "gamma": 0.5},
            },
        ),
    )
    recs = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in recs if r["event"] == "train"] == [3, 6, 9]
    assert [r["step"] for r in recs if r["event"] == "eval"] == [4, 8, 11]  # plus a final one
    # lr of the record's last step t-1 (0-based): 0.02 · 0.5^⌊(t−1)/2⌋
    assert all(r["lr"] == pytest.approx(0.02 * 0.5 ** ((r["step"] - 1) // 2)) for r in recs)


def test_early_stopping_restores_the_best_weights():
    tr = trainer(
        {"train": {"epochs": 20, "early_stopping": {"metric": "val_loss", "patience": 2, "min_delta": 1e9}}}
    )
    seen = []

    class Keep:
        def on_eval(self, t, rec, improved):
            seen.append(t.chain.state_dict())

    tr.callbacks.append(Keep())
    result = tr.run()
    assert result.reason == "early stopping" and result.steps == 3 * tr.steps_per_epoch
    final = tr.chain.state_dict()
    assert all(np.array_equal(final[k], seen[0][k]) for k in final)
    assert not all(np.array_equal(final[k], seen[-1][k]) for k in final)


def test_gradient_clipping_bounds_the_update():
    tr = trainer(
        {
            "optimizer": {"type": "sgd", "lr": 1.0},
            "train": {"epochs": None, "steps": 1, "clip_grad_norm": 1e-3},
        }
    )
    before = tr.chain.state_dict()
    tr.run()
    after = tr.chain.state_dict()
    step = math.sqrt(sum(float(np.sum((after[k] - before[k]) ** 2)) for k in before))
    assert step == pytest.approx(1e-3, rel=1e-3)  # SGD with lr 1: the update is the clipped gradient


def test_nonfinite_stop_names_the_module():
    tr = trainer({"optimizer": {"type": "sgd", "lr": 1e300}, "train": {"epochs": 2}})
    result = tr.run()
    assert result.status == "diverged"
    assert "module 0 (MM)" in result.reason or "module 3 (MM)" in result.reason
    assert result.steps < tr.total_steps


def test_locate_nonfinite_points_at_the_first_bad_forward():
    tr = trainer()
    tr.chain.modules[3].params["weight"][0, 0] = np.inf
    msg = locate_nonfinite(tr.chain, np.ones((2, 2)), np.array([0, 1]), math.nan, 5)
    assert "step 5" in msg and "parameter 3.weight of module 3 (MM)" in msg


@pytest.mark.parametrize("mode", ["skip", "ignore"])
def test_nonfinite_skip_or_ignore(mode):
    x = np.random.default_rng(1).standard_normal((60, 2))
    x[7, 0] = np.inf  # one poisoned example: its batch gives a NaN loss
    tr = trainer({"train": {"epochs": 2, "on_nonfinite": mode}}, train_x=x)
    result = tr.run()
    assert result.status == "completed" and result.steps == tr.total_steps
    finite = all(np.all(np.isfinite(p)) for p in tr.chain.state_dict().values())
    if mode == "skip":
        assert result.extra["skipped_steps"] == 2 and finite
    else:
        assert result.extra["skipped_steps"] == 0 and not finite


def test_float32_by_default_and_data_cast_once():
    tr = trainer()
    assert tr.chain.dtype == np.float32 and tr.x.dtype == np.float32 and tr._xbuf.dtype == np.float32


def test_best_metric_must_exist():
    from nncli.core.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'val_acc'"):
        trainer({"train": {"best_metric": "val_accc"}})


def test_a_crash_marks_the_run_failed_and_exits_1(tmp_path):
    from nncli.runs.session.prepare import prepare
    from nncli.runs.train_run import run_session

    class Boom:
        def on_step(self, t):
            if t.state.step == 3:
                raise RuntimeError("disk on fire")

    s = prepare(tiny_run_config(tmp_path), [])
    s.trainer.callbacks.append(Boom())
    assert run_session(s, tmp_path / "runs").exit_code == 1
    info = json.loads((s.folder / "run.json").read_text())
    assert info["status"] == "failed" and "disk on fire" in info["error"]


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_output(terminal):
    import io

    from rich.console import Console

    from nncli.viz.progress import PlainProgress, RichProgress, make_progress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=120)
    progress = make_progress(console, quiet=False)
    assert isinstance(progress, RichProgress if terminal else PlainProgress)
    assert make_progress(console, quiet=True) is None
    tr = trainer({"train": {"epochs": 2}})
    tr.callbacks.append(progress)
    tr.run()
    text = buf.getvalue()
    assert "val_acc" in text or "val acc" in text
    assert f"{tr.total_steps}/{tr.total_steps}" in text.replace("step ", "")


def test_progress_bar_shows_the_validation_loss_of_a_regression():
    import io

    from rich.console import Console

    from nncli.viz.progress import RichProgress, make_progress

    buf = io.StringIO()
    progress = make_progress(Console(file=buf, force_terminal=True, width=120), quiet=False)
    assert isinstance(progress, RichProgress)
    layers = [{"type": "MM", "out": 8}, {"type": "Tanh"}, {"type": "MM", "out": 1}]
    tr = trainer({"loss": "mse", "model": {"layers": layers}, "train": {"epochs": 1}})
    tr.callbacks.append(progress)
    tr.run()
    assert "val loss " in buf.getvalue() and "val acc" not in buf.getvalue()


def test_checkpoint_every_between_evaluations():
    tr = trainer({"train": {"epochs": 2, "checkpoint_every": 3}})  # 60 examples: 4 steps per epoch
    saved = []

    class Saves:
        def on_checkpoint(self, t, best):
            saved.append(t.state.step)

    tr.callbacks.append(Saves())
    tr.run()
    assert tr.steps_per_epoch == 4 and saved == [3, 4, 6, 8]  # every 3 steps and each evaluation
