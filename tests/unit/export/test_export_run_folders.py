"""From a run folder, through the command line: the exported model takes raw inputs (the run's
standardisation inside), names the classes, loads from a moved folder; ``--network-only`` is the
bare network."""

from __future__ import annotations

import numpy as np
import pytest
from export_cases import import_file, metadata_props, onnx_session

from nncli.export import export_run

MEAN, STD = 0.5 * np.arange(8), 1.0 + np.arange(8)  # the fixture run's standardisation


def raw_rows(n: int = 5, seed: int = 4) -> np.ndarray:
    """Raw inputs (n, 1, 8) far from standardised, as the fixture run's data would be."""
    return np.random.default_rng(seed).normal(3.0, 4.0, size=(n, 1, 8))


def standardized(raw: np.ndarray) -> np.ndarray:
    return ((raw - MEAN) / STD).astype(np.float32)


def test_torch_export_takes_raw_inputs(run_dir, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    from nncli.cli import main

    run, chain = run_dir
    main(["export", str(run), "--format", "torch"])  # default: <run>/export/model.py + model.safetensors
    assert (run / "export" / "model.safetensors").is_file()
    mod = import_file(run / "export" / "model.py", "run_model")
    model = mod.load_model()
    raw = raw_rows()
    want = chain.forward(standardized(raw))
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(raw)).numpy(), want, rtol=1e-4, atol=1e-5)
        x = torch.from_numpy(standardized(raw))
        np.testing.assert_allclose(model.network(x).numpy(), want, rtol=1e-4, atol=1e-5)
    assert mod.CLASS_NAMES == ["cat", "dog", "eel"] and mod.RAW_SHAPE == (1, 8)
    last = export_run(run, "torch", checkpoint="last", out=tmp_path / "last.py")
    assert (tmp_path / "last.safetensors").is_file()
    with torch.no_grad():
        out = import_file(last, "last_model").load_model()(torch.from_numpy(raw)).numpy()
    assert np.all(out == 0)  # the all-zero `last` weights


def test_torch_export_loads_from_a_moved_folder(run_dir, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    import shutil

    run, chain = run_dir
    export_run(run, "torch", out=tmp_path / "handover" / "net.py")
    moved = tmp_path / "elsewhere" / "copy"
    shutil.move(str(tmp_path / "handover"), moved)
    shutil.rmtree(run)  # neither the run nor its checkpoints exist any more
    text = (moved / "net.py").read_text()
    assert str(run) not in text and str(tmp_path) not in text  # no absolute path was written
    raw = raw_rows()
    with torch.no_grad():
        got = import_file(moved / "net.py", "moved_model").load_model()(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(got, chain.forward(standardized(raw)), rtol=1e-4, atol=1e-5)


def test_torch_network_only_is_the_old_bare_export(run_dir, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    from nncli.cli import main

    run, chain = run_dir
    main(["export", str(run), "--network-only", "-o", str(tmp_path / "bare.py")])
    mod = import_file(tmp_path / "bare.py", "bare_model")
    model = mod.load_model()
    assert isinstance(model, torch.nn.Sequential) and "preprocess" not in dict(model.named_children())
    x = standardized(raw_rows())
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), chain.forward(x), rtol=1e-4, atol=1e-5)
    raw = raw_rows()  # preprocess = the run's standardisation, as before
    np.testing.assert_allclose(mod.preprocess(raw).numpy(), (raw - MEAN) / STD, rtol=1e-6)


def test_onnx_export_takes_raw_inputs_and_names_the_classes(run_dir, tmp_path):
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    from nncli.cli import main

    run, chain = run_dir
    out = tmp_path / "m.onnx"
    main(["export", str(run), "-o", str(out)])  # the format follows the suffix
    raw = raw_rows(9)
    want = chain.forward(standardized(raw))
    scores, pred, label = onnx_session(out).run(None, {"input": raw.astype(np.float32)})
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(pred, want.argmax(axis=1))
    assert pred.dtype == np.int64 and list(label) == [["cat", "dog", "eel"][c] for c in pred]
    props = metadata_props(out)
    assert props["class_names"] == ["cat", "dog", "eel"]
    assert props["preprocessing"] == {"in_graph": ["standardize"], "network_only": False}
    assert props["inputs"][0]["name"] == "input" and props["inputs"][0]["shape"] == ["N", 1, 8]
    assert [o["name"] for o in props["outputs"]] == ["output", "prediction", "label"]
    assert props["standardization"]["std"][0][:2] == [1.0, 2.0]


def test_onnx_network_only_is_the_old_bare_export(run_dir, tmp_path):
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    from nncli.cli import main

    run, chain = run_dir
    out = tmp_path / "bare.onnx"
    main(["export", str(run), "--format", "onnx", "--network-only", "-o", str(out)])
    session = onnx_session(out)
    assert [o.name for o in session.get_outputs()] == ["output"]
    x = standardized(raw_rows())
    np.testing.assert_allclose(session.run(None, {"input": x})[0], chain.forward(x), rtol=1e-4, atol=1e-5)
    props = metadata_props(out)
    assert props["preprocessing"] == {"in_graph": [], "network_only": True}
    assert props["class_names"] == ["cat", "dog", "eel"]
    assert "standardised" in props["inputs"][0]["description"]
    assert props["standardization"]["mean"][0][:3] == [0.0, 0.5, 1.0]
