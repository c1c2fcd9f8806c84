"""The library API under the CLI: nncli.train / evaluate / load_run / gradcheck / inspect return plain results."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nncli
from nncli.core.errors import CheckpointError, UserError

CONFIG = """\
name: api
seed: 0
dtype: float64
model:
  input_shape: [2]
  layers: [{type: MM, out: 8}, {type: ReLU}, {type: MM, out: 3}]
loss: cross_entropy
data: {source: spirals, n_samples: 90, batch_size: 15, test_split: 0.2}
optimizer: {type: Adam, lr: 0.05}
train: {steps: 12, eval_every: 4, best_metric: val_acc}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("api")
    cfg = work / "c.yaml"
    cfg.write_text(CONFIG)
    outcome = nncli.train(cfg, overrides=["optimizer.lr=0.1"], runs_dir=work / "runs")
    return cfg, outcome


def test_train_returns_the_outcome_and_writes_the_run(trained):
    cfg, outcome = trained
    assert outcome.status == "completed" and outcome.exit_code == 0 and outcome.error is None
    assert outcome.summary == json.loads((outcome.run_dir / "summary.json").read_text())
    assert outcome.summary["steps"] == 12 and outcome.checkpoint_kept
    assert "optimizer.lr=0.1" in json.loads((outcome.run_dir / "run.json").read_text())["overrides"]


def test_a_bad_config_raises_before_anything_is_written(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.replace("out: 8", "out: -8"))
    with pytest.raises(UserError, match="model.layers\\[0\\].out"):
        nncli.train(cfg, runs_dir=tmp_path / "runs")
    with pytest.raises(UserError, match="give a CONFIG"):
        nncli.train(runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_evaluate_scores_the_test_split_as_the_summary_does(trained):
    _, outcome = trained
    ev = nncli.evaluate(outcome.run_dir, checkpoint="last")
    assert ev["split"] == "test" and ev["examples"] == 18 and ev["checkpoint"] == "last"
    assert ev["loss"] == pytest.approx(outcome.summary["test"]["loss"], rel=1e-12)
    assert nncli.evaluate(outcome.run_dir)["checkpoint"] == "best"


def test_load_run_predicts_what_evaluate_scores(trained, tmp_path):
    _, outcome = trained
    run = nncli.load_run(outcome.run_dir, "last")
    assert run.config.optimizer.type == "adam" and run.step == 12 and run.checkpoint == "last"
    stats = run.standardization
    assert stats["mean"].shape == (2,) and np.all(stats["std"] > 0)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 2)), rng.integers(0, 3, size=40)
    scores = run.scores(x)
    assert scores.shape == (40, 3)
    np.testing.assert_array_equal(run.predict(x), scores.argmax(axis=1))
    np.testing.assert_allclose(scores, run.chain.forward((x - stats["mean"]) / stats["std"]))
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    ev = nncli.evaluate(outcome.run_dir, data=tmp_path / "mine.npz", checkpoint="last")
    assert ev["acc"] == pytest.approx(np.mean(run.predict(x) == y))


def test_load_run_refuses_a_damaged_checkpoint(trained, tmp_path):
    import shutil

    _, outcome = trained
    copy = shutil.copytree(outcome.run_dir, tmp_path / "copy")
    weights = copy / "checkpoints" / "last.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        nncli.load_run(copy, "last")
    with pytest.raises(UserError, match="'best' or 'last'"):
        nncli.load_run(copy, "first")


def test_gradcheck_and_inspect_return_plain_results(trained):
    cfg, _ = trained
    g = nncli.gradcheck(cfg, module="MM")
    assert g.passed and g.verdict.startswith("PASS") and {r.module for r in g.reports} == {"MM"}
    assert g.to_dict()["tensors"][0]["tensor"]
    report = nncli.inspect(cfg, trace=True)
    assert report.summary.params == 2 * 8 + 8 + 8 * 3 + 3 and report.time is None
    assert [r.name for r in report.trace.rows] == ["0", "1", "2", "loss"]
    assert set(report.to_dict()) == {"summary", "trace"}
