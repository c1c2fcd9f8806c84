"""A user's own messy CSV, end to end through the real command line.

``people.csv`` has string labels (``yes`` / ``no``), a free-text column the model must not see, a
categorical column, missing cells and unbalanced classes. The walk: ``nncli train`` (columns
dropped, categories one-hot encoded, missing cells filled with the training mean, balanced class
weights) → ``nncli predict`` on an unlabelled CSV → the predictions file; the ONNX export of the run
gives the same predicted classes in onnxruntime on the same raw rows; the run's saved config trains
again from another directory; ``--init-from`` starts a new run from its weights; ``--resume --set
train.steps=N`` extends it; and a changed data file is refused with a located error.

Each stage is its own test, in order, on one module-scoped project folder; a stage whose feature is
missing from this nncli is skipped, saying which.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from support import run_main, run_nncli, write_config

CITIES = ("paris", "lyon", "nice")
CONFIG = {
    "name": "people",
    "seed": 0,
    "dtype": "float64",
    "model": {
        "input_shape": [5],  # age, income, and city one-hot over 3 categories
        "layers": [{"type": "MM", "out": 16}, {"type": "ReLU"}, {"type": "MM", "out": 2}],
    },
    "loss": "cross_entropy",
    "data": {
        "source": "people.csv",
        "target_column": "bought",
        "drop": ["comment"],
        "categorical": ["city"],
        "missing": "mean",
        "class_weights": "balanced",
        "test_split": 0.2,
        "batch_size": 32,
    },
    "optimizer": {"type": "adam", "lr": 0.02},
    "train": {"steps": 60, "eval_every": 20},
}


def _people(rng: np.random.Generator, n: int, labelled: bool) -> list[dict[str, str]]:
    rows = []
    for _ in range(n):
        age, income = rng.uniform(18, 80), rng.normal(50, 15)
        city = CITIES[rng.choice(3, p=[0.5, 0.3, 0.2])]
        score = income / 10 + 2.0 * (city == "paris") - age / 20 + rng.normal(0, 0.5)
        row = {
            "age": "" if rng.random() < 0.1 else f"{age:.1f}",  # one age in ten is missing
            "income": f"{income:.2f}",
            "city": city,
            "comment": rng.choice(["great service", "too expensive, maybe later", "n/a", "ok"]),
        }
        if labelled:
            row["bought"] = "yes" if score > 5.5 else "no"
        rows.append(row)
    return rows


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _need(run: Path | None, what: str) -> Path:
    if run is None:
        pytest.skip(f"an earlier stage failed or was skipped: {what}")
    return run


def _feature(name: str) -> None:
    """Skip when this nncli's data section lacks the tables feature (keys features/drop/categorical)."""
    from nncli.config.schema import DataConfig

    if name not in DataConfig.model_fields:
        pytest.skip(f"this nncli has no data.{name} (tables in the data section)")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The user's folder: people.csv (labelled), people_new.csv (no label column), people.yaml."""
    folder = tmp_path_factory.mktemp("own_data") / "project"
    folder.mkdir()
    rng = np.random.default_rng(7)
    _write(folder / "people.csv", _people(rng, 300, labelled=True))
    new = _people(rng, 40, labelled=False)
    new[0]["age"] = ""  # a missing cell at prediction time: filled with the training mean
    _write(folder / "people_new.csv", new)
    write_config(folder, CONFIG, "people.yaml")
    return {"folder": folder, "run": None}


def test_1_train_on_a_messy_csv(project):
    for key in ("drop", "categorical", "missing", "class_weights"):
        _feature(key)
    folder = project["folder"]
    res = run_nncli("train", "people.yaml", "-q", "--no-curves", cwd=folder)
    assert res.code == 0, res
    (run,) = (folder / "runs").iterdir()
    data = json.loads((run / "run.json").read_text())["data"]
    assert data["class_names"] == ["no", "yes"]  # string labels, sorted
    spec = data["preprocessing"]
    assert [e["column"] for e in spec["inputs"]] == ["age", "income", "city"]  # comment dropped
    assert spec["inputs"][0]["fill"] is not None  # the training mean of age
    assert spec["inputs"][2]["categories"] == sorted(CITIES)
    weights = data["class_weights"]
    assert len(weights) == 2 and weights[1] > weights[0]  # "yes" is the rarer class
    summary = json.loads((run / "summary.json").read_text())
    assert math.isfinite(summary["final"]["val_loss"])
    project["run"] = run


def test_2_predict_an_unlabelled_csv(project):
    run, folder = _need(project["run"], "train"), project["folder"]
    res = run_main("predict", run, folder / "people_new.csv", "--out", folder / "pred.csv", "--proba")
    assert res.code == 0, res
    pred = _read(folder / "pred.csv")
    assert len(pred) == 40 and set(pred[0]) == {"prediction", "p_no", "p_yes"}
    assert {p["prediction"] for p in pred} <= {"no", "yes"}
    assert len({p["prediction"] for p in pred}) == 2  # both classes predicted: the check below bites
    for p in pred:
        assert abs(float(p["p_no"]) + float(p["p_yes"]) - 1) < 1e-9
        assert p["prediction"] == ("yes" if float(p["p_yes"]) > float(p["p_no"]) else "no")
    project["pred"] = [p["prediction"] for p in pred]


def test_3_onnx_export_predicts_the_same_classes_on_the_raw_rows(project):
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    ort = pytest.importorskip("onnxruntime", reason="checking the ONNX export needs onnxruntime")
    run, folder = _need(project["run"], "train"), project["folder"]
    want = project.get("pred") or pytest.skip("the predict stage failed")
    res = run_main("export", run, "-o", folder / "people.onnx")
    assert res.code == 0, res
    rows = _read(folder / "people_new.csv")  # the raw rows, as the user has them
    numbers = np.array(
        [[float(r[c]) if r[c].strip() else np.nan for c in ("age", "income")] for r in rows], np.float32
    )
    session = ort.InferenceSession(str(folder / "people.onnx"), providers=["CPUExecutionProvider"])
    feed = {"input": numbers, "city": np.array([r["city"] for r in rows], dtype=object)}
    assert {i.name for i in session.get_inputs()} == set(feed)  # the comment column is not an input
    ids, labels = session.run(["prediction", "label"], feed)
    assert list(labels) == want
    assert [["no", "yes"][i] for i in ids] == want


def test_3b_the_pytorch_export_moved_elsewhere_predicts_the_same(project, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    import importlib.util
    import shutil

    run, folder = _need(project["run"], "train"), project["folder"]
    want = project.get("pred") or pytest.skip("the predict stage failed")
    res = run_main("export", run, "-o", tmp_path / "handover" / "people.py")
    assert res.code == 0, res
    shutil.move(str(tmp_path / "handover"), tmp_path / "moved")  # the .py and its weights, together
    spec = importlib.util.spec_from_file_location("people_export", tmp_path / "moved" / "people.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = _read(folder / "people_new.csv")
    table = {c: [r[c] for r in rows] for c in rows[0]}  # raw cells, as text, the comment included
    with torch.no_grad():
        ids = mod.load_model(dtype=torch.float64)(mod.encode(table)).argmax(dim=1).tolist()
    assert [mod.CLASS_NAMES[i] for i in ids] == want


def test_4_the_saved_config_trains_again_from_another_directory(project, tmp_path):
    run = _need(project["run"], "train")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_nncli("train", run / "config.yaml", "-q", "--no-curves", "--runs-dir", "again", cwd=elsewhere)
    if res.code == 2 and "people.csv" in res.err and "not found" in res.err:
        pytest.skip("this nncli resolves a saved config's data path from the working directory")
    assert res.code == 0, res
    (again,) = (elsewhere / "again").iterdir()
    first = json.loads((run / "summary.json").read_text())["final"]
    second = json.loads((again / "summary.json").read_text())["final"]
    assert second["val_loss"] == first["val_loss"]  # the same data, split and seed: the same run


def test_5_init_from_fine_tunes_from_the_runs_weights(project):
    run, folder = _need(project["run"], "train"), project["folder"]
    res = run_nncli(
        "train", "people.yaml", "-q", "--no-curves", "--runs-dir", "fine",
        "--init-from", f"{run}:best", "--set", "train.steps=5", "--set", "optimizer.lr=1e-12",
        cwd=folder,
    )  # fmt: skip
    if res.code == 2 and "--init-from" in res.err and "No such option" in res.err:
        pytest.skip("this nncli has no train --init-from")
    assert res.code == 0, res
    (fine,) = (folder / "fine").iterdir()
    record = json.loads((fine / "run.json").read_text())["init_from"]
    assert record["run"] == str(run.resolve()) and record["checkpoint"] == "best"
    # a learning rate of 1e-12: the fine-tuned model is the source's best, so it predicts the same
    res = run_main("predict", fine, folder / "people_new.csv", "--out", folder / "fine.csv")
    assert res.code == 0, res
    assert [p["prediction"] for p in _read(folder / "fine.csv")] == project["pred"]


def test_6_a_completed_run_is_extended(project):
    run, folder = _need(project["run"], "train"), project["folder"]
    res = run_nncli("train", "--resume", run, "--set", "train.steps=90", "-q", "--no-curves", cwd=folder)
    if res.code == 2 and "already completed" in res.err:
        pytest.skip("this nncli cannot extend a completed run")
    assert res.code == 0, res
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["steps"] == 90
    assert [(e["from_steps"], e["to_steps"]) for e in info["extensions"]] == [(60, 90)]
    res = run_main("predict", run, folder / "people_new.csv", "--out", folder / "extended.csv")
    assert res.code == 0, res
    assert len(_read(folder / "extended.csv")) == 40


def test_7_a_run_whose_data_changed_is_refused(project, tmp_path):
    run, folder = _need(project["run"], "train"), project["folder"]
    config = (run / "config.yaml").read_text()
    if "sha256" not in config:
        pytest.skip("this nncli records no data fingerprint in the saved config")
    with open(folder / "people.csv", "a") as fh:
        fh.write("30.0,55.00,paris,late addition,yes\n")
    os.utime(folder / "people.csv")
    res = run_nncli("train", run / "config.yaml", "-q", "--no-curves", "--runs-dir", tmp_path, cwd=tmp_path)
    assert res.code == 2, res
    assert "people.csv" in res.err and len(res.err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written
