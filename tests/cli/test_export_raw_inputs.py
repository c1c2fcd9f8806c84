"""Exports of real runs take raw inputs: onnxruntime and the exported PyTorch module predict what
``nncli predict`` predicts on the same raw rows (a packaged image set and a CSV of the user's)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import run_main, write_config

import nncli
from nncli.training.data import load_dataset

pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
ort = pytest.importorskip("onnxruntime", reason="checking the ONNX export needs onnxruntime (nncli[onnx])")


def _onnx(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": x.astype(np.float32)}), strict=True))


def _predicted(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return [row["prediction"] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A digits MLP trained briefly (standardised inputs, the default), and raw test rows."""
    folder = tmp_path_factory.mktemp("digits")
    outcome = nncli.train(
        Path(__file__).parents[2] / "configs" / "digits_mlp.yaml",
        overrides=["train.epochs=2", "train.log_every=1000"],
        runs_dir=folder / "runs",
        raise_errors=True,
    )
    assert outcome.status == "completed"
    run = nncli.load_run(outcome.run_dir)
    assert run.standardization is not None  # the default: what the bare network does not see
    raw = load_dataset(
        run.config.data.model_copy(update={"standardize": False, "val_split": 0.0}),
        input_shape=tuple(run.config.model.input_shape),
        loss=run.chain.loss,
        seed=0,
    ).train.x[:300]
    assert raw.max() > 10  # grey levels 0-16: far from standardised
    np.savez(folder / "raw.npz", x=raw)
    return folder, outcome.run_dir, raw


def test_digits_onnx_on_raw_rows_equals_nncli_predict(digits_run):
    folder, run, raw = digits_run
    assert run_main("predict", run, folder / "raw.npz", "--out", folder / "pred.csv").code == 0
    want = np.array(_predicted(folder / "pred.csv"), dtype=np.int64)
    assert run_main("export", run, "-o", folder / "digits.onnx").code == 0
    got = _onnx(folder / "digits.onnx", raw)
    np.testing.assert_array_equal(got["prediction"], want)
    np.testing.assert_array_equal(got["output"].argmax(axis=1), want)
    scores = nncli.load_run(run).scores(raw)
    np.testing.assert_allclose(got["output"], scores, rtol=1e-4, atol=1e-4)
    # the bare network on the same raw rows computes something else: why the default changed
    assert run_main("export", run, "--network-only", "-o", folder / "bare.onnx").code == 0
    bare = _onnx(folder / "bare.onnx", raw)["output"]
    assert np.mean(bare.argmax(axis=1) == want) < 0.9


def test_digits_torch_export_on_raw_rows_equals_nncli_predict(digits_run, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    import importlib.util

    folder, run, raw = digits_run
    assert run_main("export", run, "-o", tmp_path / "pack" / "digits.py").code == 0
    shutil.move(str(tmp_path / "pack"), tmp_path / "moved")
    spec = importlib.util.spec_from_file_location("digits_export", tmp_path / "moved" / "digits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.no_grad():
        got = mod.load_model()(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(got, nncli.load_run(run).scores(raw), rtol=1e-4, atol=1e-4)


def test_csv_run_onnx_on_raw_rows_equals_nncli_predict(tmp_path):
    """A user's CSV (a named label column last), predicted from a CSV without it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 3)) * [1.0, 50.0, 0.01] + [0.0, 300.0, 2.0]
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 300).astype(int)
    with open(tmp_path / "train.csv", "w") as fh:
        fh.write("a,b,c,band\n" + "".join(f"{r[0]},{r[1]},{r[2]},{c}\n" for r, c in zip(x, y, strict=True)))
    new = rng.normal(size=(40, 3)) * [1.0, 50.0, 0.01] + [0.0, 300.0, 2.0]
    with open(tmp_path / "new.csv", "w") as fh:
        fh.write("a,b,c\n" + "".join(",".join(repr(float(v)) for v in r) + "\n" for r in new))
    cfg = {
        "name": "bands",
        "model": {
            "input_shape": [3],
            "layers": [{"type": "MM", "out": 8}, {"type": "ReLU"}, {"type": "MM", "out": 3}],
        },
        "loss": "cross_entropy",
        "data": {"source": "train.csv", "target_column": "band", "batch_size": 32},
        "optimizer": {"type": "adam", "lr": 0.02},
        "train": {"steps": 40},
    }
    write_config(tmp_path, cfg)
    assert (
        run_main("train", tmp_path / "cfg.yaml", "-q", "--no-curves", "--runs-dir", tmp_path / "runs").code
        == 0
    )
    (run,) = (tmp_path / "runs").iterdir()
    assert run_main("predict", run, tmp_path / "new.csv", "--out", tmp_path / "pred.csv").code == 0
    want = _predicted(tmp_path / "pred.csv")
    assert run_main("export", run, "--format", "onnx").code == 0
    got = _onnx(run / "export" / "model.onnx", new)
    assert [str(c) for c in got["prediction"]] == want
    assert len(set(want)) > 1  # the rows are not all one class: the comparison means something
