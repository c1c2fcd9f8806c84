"""Where a run's metrics show: the table ``nncli train`` prints, ``nncli eval`` (and ``--metrics``),
``nncli runs`` and ``runs diff``, and ``nncli plot --confusion`` (PNG and terminal)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import assert_refused, run_main, write_config

CONFIG = """\
    seed: 1
    dtype: float64
    model: {input_shape: [2], layers: [{type: MM, out: 16}, {type: Tanh}, {type: MM, out: 3}]}
    loss: cross_entropy
    metrics: [acc, top2, f1_macro, roc_auc, confusion_matrix]
    data: {source: spirals, n_samples: 150, batch_size: 15, val_split: 0.2, test_split: 0.2}
    optimizer: {type: adam, lr: 0.03}
    train: {steps: 30, eval_every: 10, best_metric: val_f1_macro}
"""


def trained(folder: Path, text: str) -> tuple[Path, str]:
    """(run folder, what ``nncli train`` printed on stderr)."""
    folder.mkdir(parents=True, exist_ok=True)
    res = run_main("train", write_config(folder, text), "--runs-dir", folder / "runs", "--no-curves")
    assert res.code == 0, res
    (run,) = (folder / "runs").iterdir()
    return run, res.err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    return trained(tmp_path_factory.mktemp("metrics_views"), CONFIG)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    """A classifier run with the default metrics: no confusion matrix stored."""
    text = CONFIG.replace("    metrics: [acc, top2, f1_macro, roc_auc, confusion_matrix]\n", "")
    return trained(tmp_path_factory.mktemp("plain"), text.replace("val_f1_macro", "val_acc"))[0]


def body_rows(out: str) -> list[list[str]]:
    """The cells of a rich table's body rows (the lines between │ borders)."""
    return [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_the_results_table_shows_every_scalar_metric(run):
    _, err = run
    for row in ("val_f1_macro", "val_top2", "val_roc_auc", "test_f1_macro", "test_roc_auc", "test_acc"):
        assert row in err
    assert "val_confusion_matrix" not in err and "test_confusion_matrix" not in err


def test_eval_reports_the_runs_metrics_as_training_measured_them(run):
    folder, _ = run
    res = run_main("eval", folder, "--json")
    assert res.code == 0, res
    got = json.loads(res.out)
    summary = summary_of(folder)
    # eval reads the best checkpoint; training tested the final weights, and the best's when they differ
    want = summary["test_best"] or summary["test"]
    for key in ("loss", "acc", "top2", "f1_macro", "roc_auc"):
        assert got[key] == pytest.approx(want[key]), key
    assert got["confusion_matrix"] == want["confusion_matrix"]
    assert got["split"] == "test" and got["examples"] == 30


def test_eval_metrics_option_chooses_what_to_compute(run):
    folder, _ = run
    res = run_main("eval", folder, "--json", "--metrics", "f1_weighted,recall_macro", "--metrics", "top2")
    assert res.code == 0, res
    got = json.loads(res.out)
    assert [k for k in got if k not in ("run", "checkpoint", "step", "split", "examples")] == [
        "loss", "f1_weighted", "recall_macro", "top2"
    ]  # fmt: skip
    res = run_main("eval", folder, "--metrics", "f1_macro,confusion_matrix")
    assert res.code == 0, res
    assert "f1_macro" in res.err and "true \\ pred" in res.err and "precision" in res.err


def test_eval_refuses_metrics_that_do_not_fit(run):
    folder, _ = run
    assert_refused(run_main("eval", folder, "--metrics", "r2"), "--metrics[0]", "r2 is a regression metric")
    assert_refused(
        run_main("eval", folder, "--metrics", "acc,f1_macr"), "--metrics[1]", "did you mean 'f1_macro'"
    )


def test_runs_lists_the_test_value_of_the_best_metric(run):
    folder, _ = run
    res = run_main("runs", folder.parent, "--json")
    assert res.code == 0, res
    (row,) = json.loads(res.out)
    summary = summary_of(folder)
    assert row["best_metric"] == "val_f1_macro"
    assert (row["test_metric"], row["test_value"]) == ("f1_macro", pytest.approx(summary["test"]["f1_macro"]))
    assert set(row["test"]) == {"loss", "acc", "top2", "f1_macro", "roc_auc"}  # no matrix
    table = run_main("runs", folder.parent)
    assert "f1_macro" in table.out


def test_runs_diff_leaves_matrices_out(run, plain_run):
    folder, _ = run
    res = run_main("runs", "diff", folder, plain_run, "--json")
    assert res.code == 0, res
    keys = [r["key"] for r in json.loads(res.out)["metrics"]]
    assert "test.f1_macro" in keys and not any("confusion" in k for k in keys)


def test_plot_confusion_in_the_terminal_from_the_summary(run):
    folder, _ = run
    res = run_main("plot", folder, "--confusion", "--terminal")
    assert res.code == 0, res
    m = np.array(summary_of(folder)["test"]["confusion_matrix"])
    assert "test split, final weights" in res.out and "true \\ pred" in res.out
    rows = body_rows(res.out)
    for i, row in enumerate(m):  # each true class's row of counts, then its recall
        assert rows[i][:4] == [str(i), *map(str, row)]
        assert rows[i][4] == f"{row[i] / row.sum():.0%}"
    assert rows[3][0] == "precision"


def test_plot_confusion_png(run):
    pytest.importorskip("matplotlib", reason="the PNG needs matplotlib (pip install 'nncli[plot]')")
    folder, _ = run
    res = run_main("plot", folder, "--confusion")
    assert res.code == 0, res
    png = folder / "confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in res.err


def test_plot_confusion_computes_it_when_the_run_did_not_store_it(plain_run):
    assert "confusion_matrix" not in summary_of(plain_run)["test"]
    res = run_main("plot", plain_run, "--confusion", "--terminal")
    assert res.code == 0, res
    assert "test split, best checkpoint" in res.out
    ev = json.loads(run_main("eval", plain_run, "--json", "--metrics", "confusion_matrix").out)
    assert np.array(ev["confusion_matrix"]).sum() == 30
    assert body_rows(res.out)[0][1:4] == [str(v) for v in ev["confusion_matrix"][0]]


def test_plot_confusion_shows_the_class_names_a_run_saved(run):
    from nncli.viz.confusion import class_labels

    folder, _ = run
    info = json.loads((folder / "run.json").read_text())
    info["data"]["class_names"] = ["cat", "dog", "eel"]
    (folder / "run.json").write_text(json.dumps(info))
    try:
        assert class_labels(folder, 3) == ["cat", "dog", "eel"]
        assert class_labels(folder, 4) == ["0", "1", "2", "3"]  # names that do not fit are not used
        res = run_main("plot", folder, "--confusion", "--terminal")
        assert res.code == 0 and "dog" in res.out, res
    finally:
        del info["data"]["class_names"]
        (folder / "run.json").write_text(json.dumps(info))


def test_plot_confusion_refuses_a_regression_run_and_several_runs(tmp_path, run):
    reg = """\
        seed: 0
        model: {input_shape: [1], layers: [{type: MM, out: 1}]}
        loss: mse
        data: {source: regression1d, n_samples: 40, batch_size: 10}
        train: {steps: 2}
    """
    folder, _ = trained(tmp_path, reg)
    assert_refused(run_main("plot", folder, "--confusion", "--terminal"), "needs a classifier run", "mse")
    assert_refused(run_main("plot", folder, run[0], "--confusion"), "--confusion draws one run")


def test_plot_confusion_without_matplotlib_draws_in_the_terminal(run, monkeypatch):
    import nncli.viz.curves

    monkeypatch.setattr(nncli.viz.curves, "have_matplotlib", lambda: False)
    folder, _ = run
    res = run_main("plot", folder, "--confusion")
    assert res.code == 0 and "true \\ pred" in res.out, res


def test_plot_confusion_png_elsewhere(run, tmp_path):
    pytest.importorskip("matplotlib", reason="the PNG needs matplotlib (pip install 'nncli[plot]')")
    folder, _ = run
    res = run_main(
        "plot", folder, "--confusion", "-o", tmp_path / "cm.png", "--width", "500", "--height", "400"
    )
    assert res.code == 0, res
    from matplotlib.image import imread

    assert imread(tmp_path / "cm.png").shape[:2] == (400, 500)
