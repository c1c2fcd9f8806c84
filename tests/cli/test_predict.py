"""``nncli predict RUN DATA``: unlabelled CSV / NPZ / stdin in, predictions out (CSV, NPZ, JSON lines)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from support import assert_refused, nncli_env, run_main, run_nncli, write_config

import nncli
from nncli.runs.predictions.inputs import read_chunks
from nncli.runs.predictions.predict import predict_file

N_IN = 3


def _write_csv(path, x, y=None, header=True):
    names = ["a", "b", "c"][: x.shape[1]] + (["label"] if y is not None else [])
    with open(path, "w") as fh:
        if header:
            fh.write(",".join(names) + "\n")
        for i, row in enumerate(x):
            cells = [f"{v:.6f}" for v in row] + ([str(int(y[i]))] if y is not None else [])
            fh.write(",".join(cells) + "\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier trained on a CSV with a named label column, and raw inputs to predict."""
    folder = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, N_IN)) * [1.0, 5.0, 0.1] + [0.0, 10.0, -3.0]
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 12).astype(int)
    _write_csv(folder / "train.csv", x, y)
    cfg = {
        "name": "mine",
        "seed": 0,
        "dtype": "float64",
        "model": {
            "input_shape": [N_IN],
            "layers": [{"type": "MM", "out": 8}, {"type": "ReLU"}, {"type": "MM", "out": 3}],
        },
        "loss": "cross_entropy",
        "data": {"source": "train.csv", "target_column": "label", "batch_size": 32},
        "optimizer": {"type": "adam", "lr": 0.01},
        "train": {"steps": 30},
    }
    write_config(folder, cfg)
    res = run_nncli("train", "cfg.yaml", "-q", "--no-curves", cwd=folder)
    assert res.code == 0, res
    (run,) = (folder / "runs").iterdir()
    xnew = rng.normal(size=(25, N_IN)) * [1.0, 5.0, 0.1] + [0.0, 10.0, -3.0]
    _write_csv(folder / "new.csv", xnew)
    return folder, run, xnew


def _read_csv_out(text):
    lines = text.strip().split("\n")
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def test_predict_csv_to_stdout_matches_the_library(trained):
    folder, run, xnew = trained
    res = run_nncli("predict", run, "new.csv", "--proba", cwd=folder)
    assert res.code == 0, res
    head, rows = _read_csv_out(res.out)
    assert head == ["prediction", "p_0", "p_1", "p_2"]
    assert len(rows) == len(xnew)
    want = nncli.load_run(run).predict(np.round(xnew, 6))
    assert [int(r[0]) for r in rows] == want.tolist()
    probs = np.array([[float(v) for v in r[1:]] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == want).all()
    assert res.err == ""


def test_label_column_is_ignored_and_outputs_by_suffix(trained, tmp_path):
    folder, run, _ = trained
    plain = run_main("predict", run, folder / "new.csv", "--out", tmp_path / "a.csv")
    labelled = run_main("predict", run, folder / "train.csv", "--out", tmp_path / "b.jsonl")
    npz = run_main(
        "predict", run, folder / "train.csv", "--out", tmp_path / "c.npz", "--proba", "--checkpoint", "last"
    )
    assert plain.code == labelled.code == npz.code == 0, (plain, labelled, npz)
    assert "written to" in labelled.err and plain.out == ""
    records = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    arrays = np.load(tmp_path / "c.npz")
    assert len(records) == 200 == len(arrays["prediction"])
    assert arrays["proba"].shape == (200, 3)
    assert [r["prediction"] for r in records] == arrays["prediction"].tolist()  # best == last here (one eval)


def test_stdin_and_headerless_rows(trained):
    folder, run, xnew = trained
    text = "\n".join(",".join(f"{v:.6f}" for v in row) for row in xnew[:4]) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "nncli", "predict", str(run), "-"],
        input=text.encode(),
        capture_output=True,
        env=nncli_env(),
        cwd=folder,
    )
    assert proc.returncode == 0, proc.stderr
    _, rows = _read_csv_out(proc.stdout.decode())
    assert [int(r[0]) for r in rows] == nncli.load_run(run).predict(np.round(xnew[:4], 6)).tolist()


def test_npz_input_and_regression_output(tmp_path, tiny_config):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(50, 2)), y=rng.normal(size=(50, 2)))
    cfg = dict(tiny_config, loss="squared", data={"source": "d.npz", "batch_size": 10})
    cfg["model"] = {"input_shape": [2], "layers": [{"type": "MM", "out": 2}]}
    write_config(tmp_path, cfg)
    assert (
        run_main("train", tmp_path / "cfg.yaml", "-q", "--no-curves", "--runs-dir", tmp_path / "runs").code
        == 0
    )
    (run,) = (tmp_path / "runs").iterdir()
    res = run_main("predict", run, tmp_path / "d.npz")
    assert res.code == 0, res
    head, rows = _read_csv_out(res.out)
    assert head == ["prediction_0", "prediction_1"] and len(rows) == 50
    got = np.array([[float(v) for v in r] for r in rows])
    assert np.allclose(got, nncli.load_run(run).predict(np.load(tmp_path / "d.npz")["x"]))
    assert_refused(run_main("predict", run, tmp_path / "d.npz", "--proba"), "regression")


def test_chunks_are_read_lazily_in_bounded_batches(trained):
    folder, run, _ = trained
    loaded = nncli.load_run(run)
    text = "a,b,c\n" + "1,2,3\n" * 1000
    stream = io.StringIO(text)
    chunks = read_chunks(loaded, "-", stream, 64)
    first = next(chunks)
    assert first.shape == (64, N_IN)
    assert stream.tell() < len(text)  # the rest of the file is not read yet
    assert [len(c) for c in chunks][-1] == 1000 - 15 * 64
    out = io.StringIO()
    result = predict_file(run, "-", None, stdin=io.StringIO(text), stdout=out, batch=7)
    assert result["rows"] == 1000 and len(out.getvalue().splitlines()) == 1001


def test_bad_inputs_are_located_and_leave_no_output(trained, tmp_path):
    folder, run, _ = trained
    (tmp_path / "narrow.csv").write_text("a,b\n1,2\n")
    (tmp_path / "headless.csv").write_text("1,2\n")
    (tmp_path / "cell.csv").write_text("a,b,c\n1,2,3\n1,x,3\n")
    (tmp_path / "empty.csv").write_text("a,b,c\n")
    (tmp_path / "ragged.csv").write_text("a,b,c\n1,2,3\n1,2\n")
    np.savez(tmp_path / "k.npz", inputs=np.zeros((3, 3)))
    np.savez(tmp_path / "w.npz", x=np.zeros((3, 4)))
    out = tmp_path / "p.csv"
    cases = {
        ("nope.csv",): ("nope.csv: file not found",),
        ("narrow.csv",): ("narrow.csv:1:", "no column named 'c' (an input of the run)"),
        ("headless.csv",): ("headless.csv:1:", "expected 4 columns", "or 3 without the label column, got 2"),
        ("cell.csv", "--out", out): ("cell.csv:3:2: column 2 ('b'): 'x' is not a number",),
        ("empty.csv",): ("no data rows after the header",),
        ("ragged.csv",): ("ragged.csv:3: expected 3 columns",),
        ("k.npz",): ("no array named 'x'",),
        ("w.npz",): ("4 values per example", "takes 3"),
        ("data.txt",): ("unsupported file type '.txt'",),
        ("new.csv", "--out", tmp_path / "p.parquet"): ("--out", "unsupported output type"),
        ("new.csv", "--checkpoint", "mid"): ("--checkpoint must be 'best' or 'last'",),
        ("new.csv", "--out", tmp_path / "no" / "p.csv"): ("does not exist",),
    }
    for args, expected in cases.items():
        first, *rest = args
        src = folder / first if first == "new.csv" else tmp_path / first
        assert_refused(run_main("predict", run, src, *rest), *expected)
    assert_refused(run_main("predict", tmp_path, folder / "new.csv"), "not a run folder")
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_set_epochs_on_a_config_with_steps_trains_epochs(tmp_path, tiny_config_file):
    res = run_main(
        "train",
        tiny_config_file,
        "-q",
        "--no-curves",
        "--json",
        "--set",
        "train.epochs=2",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert res.code == 0, res
    summary = json.loads(res.out)
    assert summary["steps"] == 2 * 3  # 54 training examples in batches of 20: 3 steps per epoch, not steps: 4
    (run,) = (tmp_path / "runs").iterdir()
    saved = (run / "config.yaml").read_text()
    assert "epochs: 2" in saved and "steps: 4" not in saved
    assert_refused(
        run_main(
            "train",
            tiny_config_file,
            "--set",
            "train.epochs=2",
            "--set",
            "train.steps=3",
            "--runs-dir",
            tmp_path / "r2",
        ),
        "one way, epochs or steps",
        place="<command line>",
    )


def test_print_config_and_dry_run_write_nothing(tmp_path, tiny_config_file):
    runs = tmp_path / "runs"
    res = run_main(
        "train", tiny_config_file, "--print-config", "--set", "optimizer.lr=0.05", "--runs-dir", runs
    )
    assert res.code == 0, res
    import yaml

    resolved = yaml.safe_load(res.out)
    assert resolved["optimizer"]["lr"] == 0.05 and resolved["optimizer"]["momentum"] == 0.0  # a default
    assert resolved["train"]["steps"] == 4 and resolved["data"]["val_split"] == 0.1
    res = run_main("train", tiny_config_file, "--dry-run", "--json", "--runs-dir", runs)
    assert res.code == 0, res
    plan = json.loads(res.out)
    assert plan["examples"] == {"train": 54, "val": 6, "test": 0}
    assert (plan["steps"], plan["steps_per_epoch"], plan["parameters"]) == (4, 3, 8 * 2 + 8 + 3 * 8 + 3)
    assert plan["memory_bytes"]["total"] > plan["memory_bytes"]["data"] >= 60 * 2 * 8
    human = run_main("train", tiny_config_file, "--dry-run", "--runs-dir", runs)
    assert human.code == 0 and "steps     4 (3 per epoch)" in human.err and human.out == ""
    assert not runs.exists()
    assert_refused(
        run_main("train", tiny_config_file, "--dry-run", "--set", "data.source=nope.npz", "--runs-dir", runs),
        "nope.npz",
        runs_dir=runs,
    )
    assert_refused(
        run_main("train", tiny_config_file, "--print-config", "--set", "optimizer.lr=-1"), "optimizer.lr"
    )
    assert_refused(run_main("train", "--dry-run", "--resume", tmp_path), "--dry-run needs a CONFIG")
