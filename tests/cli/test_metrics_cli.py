"""``metrics:`` in a config: what a run logs (metrics.jsonl, summary.json), best_metric and early stopping on
any scalar metric, the defaults of configs that say nothing, and the refusals of names that do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import assert_refused, run_main, write_config

from nncli.runs.folder.metrics_log import read_metrics

CLASSIFIER = """\
    seed: 0
    dtype: float64
    model: {input_shape: [2], layers: [{type: MM, out: 8}, {type: ReLU}, {type: MM, out: 3}]}
    loss: cross_entropy
    metrics: [accuracy, top2, f1_macro, precision_weighted, recall_micro, roc_auc, confusion_matrix]
    data: {source: spirals, n_samples: 150, batch_size: 15, val_split: 0.2, test_split: 0.2}
    optimizer: {type: adam, lr: 0.02}
    train: {steps: 24, eval_every: 6, best_metric: val_f1_macro}
"""

REGRESSION = """\
    seed: 0
    dtype: float64
    model: {input_shape: [1], layers: [{type: MM, out: 16}, {type: Tanh}, {type: MM, out: 1}]}
    loss: squared
    metrics: [loss, mae, rmse, mse, r2]
    data: {source: regression1d, n_samples: 120, batch_size: 20, val_split: 0.2, test_split: 0.2}
    optimizer: {type: adam, lr: 0.02}
    train: {steps: 18, eval_every: 6, best_metric: val_r2, early_stopping: {metric: val_mae, patience: 5}}
"""


def train(tmp_path: Path, text: str, *args: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    res = run_main(
        "train", write_config(tmp_path, text), "--runs-dir", tmp_path / "runs", "--no-curves", *args
    )
    assert res.code == 0, res
    (run,) = (tmp_path / "runs").iterdir()
    return run


def evals(run: Path) -> list[dict]:
    return [r for r in read_metrics(run) if r.get("event") == "eval"]


def test_a_classifier_logs_its_metrics_on_val_and_test(tmp_path):
    run = train(tmp_path, CLASSIFIER)
    rows = evals(run)
    assert len(rows) == 4
    for row in rows:
        for key in ("val_loss", "val_acc", "val_top2", "val_f1_macro", "val_precision_weighted"):
            assert 0 <= row[key] <= (1 if key != "val_loss" else 10), (key, row)
        assert row["val_recall_micro"] == pytest.approx(row["val_acc"])  # single-label: micro = accuracy
        assert row["val_top2"] >= row["val_acc"]
        cm = np.array(row["val_confusion_matrix"])
        assert cm.shape == (3, 3) and cm.sum() == 30
        assert np.trace(cm) / cm.sum() == pytest.approx(row["val_acc"])
    summary = json.loads((run / "summary.json").read_text())
    best = max(rows, key=lambda r: r["val_f1_macro"])
    assert summary["best"]["step"] == best["step"] and summary["best"]["metric"] == "val_f1_macro"
    test = summary["test"]
    assert set(test) == {
        "loss", "acc", "top2", "f1_macro", "precision_weighted", "recall_micro", "roc_auc", "confusion_matrix"
    }  # fmt: skip
    assert np.array(test["confusion_matrix"]).sum() == 30


def test_a_regression_run_logs_its_metrics_and_stops_on_one(tmp_path):
    run = train(tmp_path, REGRESSION)
    rows = evals(run)
    for row in rows:
        assert set(row) >= {"val_loss", "val_mae", "val_rmse", "val_mse", "val_r2"}
        assert "val_acc" not in row
        # squared is the notes' ½ mean of the squares; mse is PyTorch's MSELoss
        assert row["val_mse"] == pytest.approx(2 * row["val_loss"])
        assert row["val_rmse"] == pytest.approx(row["val_mse"] ** 0.5)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["val_r2"] == max(r["val_r2"] for r in rows)
    assert set(summary["test"]) == {"loss", "mae", "rmse", "mse", "r2"}


def test_configs_without_metrics_log_what_they_always_did(tmp_path):
    text = CLASSIFIER.replace(
        "    metrics: [accuracy, top2, f1_macro, precision_weighted, recall_micro, roc_auc, confusion_matrix]\n",
        "",
    )
    text = text.replace("best_metric: val_f1_macro", "best_metric: val_acc")
    run = train(tmp_path / "c", text)
    keys = {"event", "step", "epoch", "lr", "train_loss_since_eval", "val_loss", "val_acc", "seconds"}
    assert all(set(r) == keys for r in evals(run))
    assert set(json.loads((run / "summary.json").read_text())["test"]) == {"loss", "acc"}
    text = REGRESSION.replace("    metrics: [loss, mae, rmse, mse, r2]\n", "")
    text = text.replace(
        "best_metric: val_r2, early_stopping: {metric: val_mae, patience: 5}", "best_metric: val_loss"
    )
    run = train(tmp_path / "r", text)
    assert all(set(r) == keys - {"val_acc"} for r in evals(run))


def test_best_metric_alone_adds_its_metric(tmp_path):
    text = CLASSIFIER.replace(
        "metrics: [accuracy, top2, f1_macro, precision_weighted, recall_micro, roc_auc, confusion_matrix]",
        "metrics: []",
    )
    text = text.replace("best_metric: val_f1_macro", "best_metric: val_roc_auc")
    run = train(tmp_path, text)
    assert all(set(r) >= {"val_loss", "val_roc_auc"} and "val_acc" not in r for r in evals(run))


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


REFUSED = {
    "a misspelled name": (
        CLASSIFIER.replace("f1_macro, precision", "f1_marco, precision"),
        "metrics:",
        ("metrics[2]", "unknown metric 'f1_marco'", "did you mean 'f1_macro'"),
    ),
    "a regression metric for a classifier": (
        CLASSIFIER.replace("metrics: [accuracy,", "metrics: [r2,"),
        "metrics:",
        ("metrics[0]", "r2 is a regression metric", "cross_entropy"),
    ),
    "a classifier's metric for regression": (
        REGRESSION.replace("metrics: [loss,", "metrics: [acc,"),
        "metrics:",
        ("metrics[0]", "acc is a classifier's metric", "squared"),
    ),
    "a binary metric for three classes": (
        CLASSIFIER.replace("metrics: [accuracy,", "metrics: [f1,"),
        "metrics:",
        ("metrics[0]", "two-class model", "f1_macro, f1_micro or f1_weighted"),
    ),
    "top-k with as many classes": (
        CLASSIFIER.replace("top2", "top3"),
        "metrics:",
        ("metrics[1]", "top3 needs more than 3 classes"),
    ),
    "best_metric not fitting the loss": (
        REGRESSION.replace("best_metric: val_r2", "best_metric: val_f1_macro"),
        "train:",
        ("train.best_metric", "f1_macro is a classifier's metric"),
    ),
    "best_metric a matrix": (
        CLASSIFIER.replace("best_metric: val_f1_macro", "best_metric: val_confusion_matrix"),
        "train:",
        ("train.best_metric", "a matrix, not a number"),
    ),
    "best_metric a test metric": (
        CLASSIFIER.replace("best_metric: val_f1_macro", "best_metric: test_acc"),
        "train:",
        ("train.best_metric", "test metrics are computed once"),
    ),
    "best_metric an alias": (
        CLASSIFIER.replace("best_metric: val_f1_macro", "best_metric: val_accuracy"),
        "train:",
        ("train.best_metric", "logged as 'val_acc'"),
    ),
    "early stopping on a misspelled metric": (
        REGRESSION.replace("metric: val_mae", "metric: val_maes"),
        "train:",
        ("train.early_stopping.metric", "did you mean 'val_mae'"),
    ),
    "metrics not a list": (
        CLASSIFIER.replace(
            "metrics: [accuracy, top2, f1_macro, precision_weighted, recall_micro, roc_auc, confusion_matrix]",
            "metrics: accuracy",
        ),
        "metrics:",
        ("metrics", "expected a list"),
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_metric_names_that_do_not_fit_are_refused_where_written(tmp_path, case):
    text, line_text, expected = REFUSED[case]
    cfg = write_config(tmp_path, text)
    res = run_main("train", cfg, "--runs-dir", tmp_path / "runs")
    written = Path(cfg).read_text()
    assert_refused(res, *expected, runs_dir=tmp_path / "runs", place=f"{cfg}:{line_of(written, line_text)}")


def test_early_stopping_follows_a_metric_that_goes_up(tmp_path):
    # F1 ≤ 1 can never improve by 2: the second evaluation without improvement stops the run
    text = CLASSIFIER.replace(
        "best_metric: val_f1_macro}",
        "best_metric: val_f1_macro, early_stopping: {metric: val_f1_macro, patience: 1, min_delta: 2}}",
    )
    run = train(tmp_path, text)
    assert len(evals(run)) == 2
    assert json.loads((run / "summary.json").read_text())["reason"] == "early stopping"


def test_directions_of_the_metrics():
    from nncli.training.metrics import higher_is_better

    up = (
        "val_acc",
        "val_top5",
        "val_f1_macro",
        "val_precision",
        "val_recall_weighted",
        "val_roc_auc",
        "test_r2",
    )
    down = ("val_loss", "train_loss", "val_mae", "val_mse", "test_rmse", "val_something_unknown")
    assert all(higher_is_better(m) for m in up) and not any(higher_is_better(m) for m in down)


def test_a_logistic_model_has_the_binary_metrics(tmp_path):
    text = (
        CLASSIFIER.replace("{type: MM, out: 3}", "{type: MM, out: 1}")
        .replace("loss: cross_entropy", "loss: logistic")
        .replace(
            "metrics: [accuracy, top2, f1_macro, precision_weighted, recall_micro, roc_auc, confusion_matrix]",
            "metrics: [acc, f1, precision, recall, f1_macro, roc_auc, confusion_matrix]",
        )
        .replace("batch_size: 15,", "batch_size: 15, classes: 2,")
    )
    run = train(tmp_path, text)
    test = json.loads((run / "summary.json").read_text())["test"]
    cm = np.array(test["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == 30
    tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
    assert test["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert test["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
    assert test["acc"] == pytest.approx(np.trace(cm) / 30) and 0 <= test["roc_auc"] <= 1


def test_without_a_validation_split_the_metrics_are_computed_on_test(tmp_path):
    text = CLASSIFIER.replace("val_split: 0.2", "val_split: 0").replace(
        "best_metric: val_f1_macro", "best_metric: train_loss"
    )
    run = train(tmp_path, text)
    assert all("val_f1_macro" not in r for r in evals(run))
    assert set(json.loads((run / "summary.json").read_text())["test"]) >= {
        "f1_macro",
        "roc_auc",
        "confusion_matrix",
    }


def test_the_progress_bar_shows_the_metric_the_best_checkpoint_follows():
    from nncli.viz.progress import val_text

    rec = {"val_loss": 0.7, "val_acc": 0.5, "val_f1_macro": 0.4}
    assert val_text(rec, "val_f1_macro") == "f1_macro 0.4000"
    assert val_text(rec, "val_loss") == val_text(rec, "train_loss") == "acc 50.00%"  # a classifier's default
    assert val_text({"val_loss": 0.7, "val_r2": 0.9}, "val_r2") == "r2 0.9000"
    assert val_text({"val_loss": 0.7}, "val_loss") == "loss 0.7000"  # regression: the validation loss
