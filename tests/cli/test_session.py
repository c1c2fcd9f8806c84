"""What a training session saves: a resolved config that reads back, memory checks, test metrics."""

from __future__ import annotations

import pytest
from support import write_config

from nncli.cli import main
from nncli.config.load import load_config

CONFIG = """\
name: "1e-3"
seed: 0
dtype: float64
model:
  input_shape: [2]
  layers: [{type: MM, out: 3}]
loss: cross_entropy
data: {source: spirals, n_samples: 60, batch_size: 20}
optimizer: {type: sgd, lr: 0.1}
train: {steps: 2}
"""


def test_a_name_that_looks_like_a_number_survives_the_saved_config(tmp_path):
    cfg = write_config(tmp_path, CONFIG, "c.yaml")
    main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--quiet"])  # returns: exit 0
    (run,) = (tmp_path / "runs").iterdir()
    again = load_config(run / "config.yaml").config
    assert again == load_config(cfg).config and again.name == "1e-3"


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_training(tmp_path, capsys):
    # 2·10⁸ values per example is allowed alone; a batch of 20 of them (32 GB in float64) is not
    cfg = write_config(tmp_path, CONFIG.replace("input_shape: [2]", "input_shape: [200000000]"), "c.yaml")
    with pytest.raises(SystemExit) as done:
        main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"{cfg}:8:" in err and "data.batch_size" in err and "GiB" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_summary_scores_the_best_checkpoint_on_test_when_it_is_not_the_final_weights(tmp_path):
    from nncli.runs.evaluate import evaluate

    # a learning rate so high that validation loss bounces: the best evaluation comes before the end
    cfg = write_config(
        tmp_path,
        CONFIG.replace("lr: 0.1", "lr: 30.0")
        .replace("steps: 2", "steps: 12, eval_every: 1")
        .replace("batch_size: 20", "batch_size: 20, test_split: 0.3"),
        "c.yaml",
    )
    main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    (run,) = (tmp_path / "runs").iterdir()
    summary = __import__("json").loads((run / "summary.json").read_text())
    assert summary["best"]["step"] < summary["steps"]
    best_on_test = evaluate(run, None, "best")
    assert summary["test_best"]["step"] == summary["best"]["step"]
    assert summary["test_best"]["loss"] == pytest.approx(best_on_test["loss"], rel=1e-12)
    assert summary["test"]["loss"] != summary["test_best"]["loss"]


def test_train_draws_curves_by_default_and_not_with_no_curves(tmp_path):
    pytest.importorskip("matplotlib", reason="curves.png needs the plot extra (matplotlib)")
    cfg = write_config(tmp_path, CONFIG.replace("steps: 2", "steps: 4, log_every: 1"), "c.yaml")
    main(["train", str(cfg), "--runs-dir", str(tmp_path / "with"), "--quiet"])
    main(["train", str(cfg), "--runs-dir", str(tmp_path / "without"), "--quiet", "--no-curves"])
    (with_run,), (without_run,) = (tmp_path / "with").iterdir(), (tmp_path / "without").iterdir()
    png = (with_run / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert not (without_run / "curves.png").exists()
