"""A run trained on a table: columns chosen, missing cells filled, categories one-hot, all inside
the exported model; a damaged or unknown preprocessing spec is one clean error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from export_cases import TABLE, import_file, metadata_props, onnx_session

from nncli.export import ExportError, export_run


def test_onnx_export_of_a_table_run_encodes_raw_columns(table_run, tmp_path):
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    from nncli.training.tables.encode import apply_preprocessing

    run, chain, stats = table_run
    out = export_run(run, "onnx", out=tmp_path / "t.onnx")
    numbers = np.array([[120.0, 30.0], [np.nan, 55.0], [80.0, 20.0], [150.0, 61.0], [99.0, 41.0]])
    city = np.array(["c", "NA", "b", "zzz", "a"], dtype=object)  # NA: filled with 'b'; zzz: unknown → zeros
    color = np.array(["red", "blue", "blue", "red", "green"], dtype=object)  # green: unknown → zeros
    session = onnx_session(out)
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("input", "tensor(float)"),
        ("city", "tensor(string)"),
        ("color", "tensor(string)"),
    ]
    scores, pred, label = session.run(
        None, {"input": numbers.astype(np.float32), "city": city, "color": color}
    )
    encoded = apply_preprocessing(TABLE, [numbers[:, 0], city, numbers[:, 1], color])
    want = chain.forward(((encoded - stats["mean"]) / np.asarray(stats["std"])).astype(np.float32))
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(pred, want.argmax(axis=1))
    assert list(label) == [["no", "yes"][c] for c in pred]
    props = metadata_props(out)
    assert props["inputs"][0]["columns"] == ["size", "age"]
    assert props["inputs"][1]["categories"] == ["a", "b", "c"]
    assert props["preprocessing"]["in_graph"] == ["select_columns", "fill_missing", "one_hot", "standardize"]
    assert props["table_preprocessing"] == TABLE


def test_onnx_table_unknown_category_policy_error_refuses_the_batch(table_run, tmp_path):
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    run, _, _ = table_run
    info = json.loads((run / "run.json").read_text())
    info["data"]["preprocessing"] = {**TABLE, "unknown_category": "error"}
    (run / "run.json").write_text(json.dumps(info))
    session = onnx_session(export_run(run, "onnx", out=tmp_path / "t.onnx"))
    feed = {"input": np.array([[1.0, 2.0]], np.float32), "city": np.array(["a"], object)}
    assert session.run(["prediction"], {**feed, "color": np.array(["red"], object)})[0].shape == (1,)
    with pytest.raises(Exception, match="(?i)unknown|not found|category"):
        session.run(None, {**feed, "color": np.array(["green"], object)})


def test_table_run_of_an_unknown_preprocessing_format_is_refused(table_run, tmp_path):
    run, _, _ = table_run
    info = json.loads((run / "run.json").read_text())
    info["data"]["preprocessing"] = {**TABLE, "format": "nncli.tabular/9"}
    (run / "run.json").write_text(json.dumps(info))
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    with pytest.raises(ExportError, match="nncli.tabular/9"):
        export_run(run, "onnx", out=tmp_path / "t.onnx")


def test_torch_export_of_a_table_run_encodes_raw_columns(table_run, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    from nncli.training.tables.encode import apply_preprocessing

    run, chain, stats = table_run
    mod = import_file(export_run(run, "torch", out=tmp_path / "t.py"), "table_model")
    table = {
        "size": [120.0, None, 80.0, float("nan")],
        "age": [30, 55, 20, 61],
        "city": ["c", "NA", " b ", "zzz"],
        "color": ["red", "blue", "blue", "green"],
        "note": ["ignored"] * 4,
    }
    sizes = np.array([120.0, np.nan, 80.0, np.nan])
    cities = np.array(table["city"], dtype=object)
    encoded = apply_preprocessing(
        TABLE, [sizes, cities, np.array(table["age"], float), np.array(table["color"], object)]
    )
    np.testing.assert_allclose(mod.encode(table).numpy(), encoded)
    with torch.no_grad():
        got = mod.load_model()(mod.encode(table)).numpy()
    want = chain.forward(((encoded - stats["mean"]) / np.asarray(stats["std"])).astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="'age': a missing value"):
        mod.encode({**table, "age": [1, None, 2, 3]})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"inputs": "all"}, "'inputs' must be a non-empty list"),
        ({"inputs": [{**TABLE["inputs"][0], "kind": "text"}]}, "inputs\\[0\\] must be an object whose kind"),
        ({"inputs": [{**TABLE["inputs"][1], "categories": []}]}, "inputs\\[0\\].categories must be"),
        ({"inputs": [{**TABLE["inputs"][1], "fill": "rome"}]}, "inputs\\[0\\].fill must be one of"),
        ({"n_inputs": 9}, "'n_inputs' is 9, but the inputs encode to 7"),
        ({"unknown_category": "guess"}, "'unknown_category' must be error or ignore"),
    ],
)
def test_a_damaged_table_spec_is_one_clean_error(table_run, tmp_path, change, message):
    run, _, _ = table_run
    info = json.loads((run / "run.json").read_text())
    info["data"]["preprocessing"] = {**TABLE, **change}
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(ExportError, match=f"run.json: data.preprocessing: {message}"):
        export_run(run, "torch", out=tmp_path / "t.py")
