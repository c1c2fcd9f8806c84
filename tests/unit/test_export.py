"""Export to PyTorch (generated Python file) and ONNX: the exported model computes nncli's forward."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import yaml

from nncli.core.chain import Chain
from nncli.core.errors import UserError
from nncli.core.module import Module
from nncli.core.registry import modules
from nncli.export import ExportError, checkpoint_path, export_run

# Architectures covering every exported module type and option (float32, like a trained run).
ARCHS = {
    "mlp": (
        (6,),
        [
            {"type": "MM", "out": 8},
            {"type": "ReLU"},
            {"type": "LN"},
            {"type": "Dropout", "p": 0.3},
            {"type": "MM", "out": 5, "bias": False},
            {"type": "Sigmoid"},
            {"type": "MM", "out": 3},
        ],
    ),
    "activations": (
        (5,),
        [
            {"type": "Tanh"},
            {"type": "LeakyReLU", "negative_slope": 0.2},
            {"type": "GELU"},
            {"type": "GELU", "approximate": "tanh"},
            {"type": "Softplus"},
            {"type": "Softplus", "beta": 2.0, "threshold": 1.0},
            {"type": "Identity"},
            {"type": "LN", "affine": "none"},
            {"type": "MM", "out": 4},
        ],
    ),
    "conv1d": (
        (12,),
        [
            {"type": "Reshape", "shape": [2, 6]},
            {"type": "Conv1D", "out": 3, "kernel": 3},
            {"type": "LN"},
            {"type": "GELU"},
            {"type": "Conv1D", "out": 4, "kernel": 2, "padding": "same"},
            {
                "type": "Residual",
                "layers": [
                    {"type": "LN", "affine": "per_feature"},
                    {"type": "Conv1D", "out": 4, "kernel": 3, "dilation": 2, "padding": 2},
                    {"type": "Tanh"},
                ],
            },
            {"type": "MaxPool1D", "kernel": 3, "stride": 1, "padding": 1},
            {"type": "Conv1D", "out": 2, "kernel": 3, "stride": 2, "padding": 1},
            {"type": "AvgPool1D", "kernel": 3, "stride": 2, "padding": 1},
            {"type": "Flatten"},
            {"type": "MM", "out": 3},
        ],
    ),
    "conv2d": (
        (2, 7, 6),
        [
            {"type": "Conv2D", "out": 3, "kernel": 3},
            {
                "type": "Conv2D",
                "out": 4,
                "kernel": [3, 2],
                "stride": [2, 1],
                "padding": [1, 0],
                "dilation": [1, 2],
                "bias": False,
            },
            {"type": "LN", "affine": "per_feature"},
            {"type": "ReLU"},
            {"type": "MaxPool2D", "kernel": [3, 2], "stride": [1, 1], "padding": [1, 0]},
            {"type": "AvgPool2D", "kernel": 2, "stride": 1, "padding": 1},
            {"type": "Residual", "layers": [{"type": "Conv2D", "out": 4, "kernel": 1}, {"type": "LN"}]},
            {"type": "Flatten"},
            {"type": "Reshape", "shape": [-1]},
            {"type": "MM", "out": 2},
        ],
    ),
}


def make_chain(name: str, seed: int = 0) -> Chain:
    """The architecture, built in float32, with every parameter moved off its init (γ ≠ 1, β ≠ 0)."""
    shape, specs = ARCHS[name]
    rng = np.random.default_rng(seed)
    mods = [modules.create(s["type"], **{k: v for k, v in s.items() if k != "type"}) for s in specs]
    chain = Chain(mods).build(shape, rng, np.float32)
    for _, p, _ in chain.parameters():
        p += rng.normal(0.0, 0.3, p.shape).astype(p.dtype)
    return chain.eval()


def inputs(chain: Chain, n: int = 7, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *chain.input_shape)).astype(np.float32)


def import_file(path, name="exported_model"):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- PyTorch -----------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on even kernels: expected
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_torch_file_equals_nncli_forward(arch, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    from safetensors.numpy import save_file

    from nncli.export.torch_export import write_torch_module

    chain = make_chain(arch)
    weights = tmp_path / "best.safetensors"
    save_file(chain.state_dict(), str(weights))
    path = write_torch_module(chain, weights, tmp_path / "model.py", title=arch)
    mod = import_file(path)
    model = mod.load_model()
    assert isinstance(model, torch.nn.Sequential) and not model.training
    assert chain.input_shape == mod.INPUT_SHAPE
    x = inputs(chain)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    want = chain.forward(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_torch_file_loads_strictly(tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    from safetensors.numpy import save_file

    from nncli.export.torch_export import write_torch_module

    chain = make_chain("conv1d")
    state = chain.state_dict()
    assert "5.body.1.weight" in state  # Residual body names, as nn.Sequential's
    weights = tmp_path / "w.safetensors"
    save_file({**state, "99.weight": np.zeros(2, np.float32)}, str(weights))
    mod = import_file(write_torch_module(chain, weights, tmp_path / "m.py"))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        mod.load_model()
    save_file({k: v for k, v in state.items() if k != "2.weight"}, str(weights))
    with pytest.raises(RuntimeError, match="Missing key"):
        mod.load_model()
    assert isinstance(mod.build_model(), torch.nn.Module)


# -- ONNX -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_onnx_equals_nncli_forward(arch, tmp_path):
    onnx = pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    ort = pytest.importorskip(
        "onnxruntime", reason="checking the ONNX export needs onnxruntime (nncli[onnx])"
    )
    from nncli.export.onnx_export import OPSET, write_onnx

    chain = make_chain(arch)
    path = write_onnx(chain, tmp_path / "model.onnx", name=arch)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET == 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 5):  # the batch size is symbolic
        x = inputs(chain, n)
        got = sess.run(["output"], {"input": x})[0]
        np.testing.assert_allclose(got, chain.forward(x), rtol=1e-4, atol=1e-5)


def test_onnx_uses_the_named_ops_and_weights():
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    from nncli.export.onnx_export import onnx_model

    chain = make_chain("conv1d")
    model = onnx_model(chain)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 4 and ops.count("LayerNormalization") == 2 and "Erf" in ops
    assert "Add" in ops and "Gemm" in ops and "Reshape" in ops and "Flatten" in ops
    assert "MaxPool" in ops and "AveragePool" in ops
    inits = {t.name for t in model.graph.initializer}
    assert set(chain.state_dict()) <= inits
    conv = [n for n in model.graph.node if n.op_type == "Conv"][1]  # kernel 2, padding same
    attrs = {a.name: list(a.ints) for a in conv.attribute}
    assert attrs["pads"] == [0, 1] and attrs["kernel_shape"] == [2]


# -- errors -------------------------------------------------------------------------------------------
class Opaque(Module):
    """A module with no export translation (the identity)."""

    def forward(self, z):
        return z

    def backward(self, v):
        return v


def test_unsupported_module_is_named():
    from nncli.export.onnx_export import onnx_model
    from nncli.export.torch_export import torch_source

    chain = Chain([Opaque()]).build((3,), np.random.default_rng(0))
    with pytest.raises(ExportError, match="Opaque layers cannot be exported to PyTorch"):
        torch_source(chain, "w.safetensors")
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    with pytest.raises(ExportError, match="Opaque layers cannot be exported to ONNX"):
        onnx_model(chain)


@pytest.mark.parametrize("fmt, extra", [("torch", "torch"), ("onnx", "onnx")])
def test_missing_extra_says_what_to_install(fmt, extra, tmp_path, monkeypatch, capsys):
    from nncli.cli import main

    monkeypatch.setitem(sys.modules, extra, None)  # makes `import torch` / `import onnx` fail
    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path), "--format", fmt])
    assert exc.value.code == 2
    assert f"pip install 'nncli[{extra}]'" in capsys.readouterr().err


def test_missing_checkpoint_lists_the_available_ones(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.safetensors").write_bytes(b"")
    (tmp_path / "checkpoints" / "last.state.safetensors").write_bytes(b"")
    with pytest.raises(ExportError, match="no best checkpoint; available: last$"):
        checkpoint_path(tmp_path, "best")
    with pytest.raises(ExportError, match="'best' or 'last'"):
        checkpoint_path(tmp_path, "first")


# -- from a run folder, through the command line ---------------------------------------------------------
CONFIG = {
    "name": "tiny",
    "seed": 0,
    "dtype": "float32",
    "model": {
        "input_shape": [1, 8],
        "layers": [
            {"type": "Conv1D", "out": 3, "kernel": 3},
            {"type": "LN"},
            {"type": "ReLU"},
            {"type": "Flatten"},
            {"type": "MM", "out": 3},
        ],
    },
    "loss": "cross_entropy",
}


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as `nncli train` leaves it, with a checkpoint of a freshly built chain."""
    from nncli.config.build import build_chain
    from nncli.config.load import load_config
    from nncli.runs.checkpoint import save_checkpoint

    run = tmp_path / "tiny-20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    stats = {"mean": [[0.5 * i for i in range(8)]], "std": [[1.0 + i for i in range(8)]]}
    data = {"standardization": stats, "class_names": ["cat", "dog", "eel"]}
    (run / "run.json").write_text(json.dumps({"status": "completed", "data": data}))
    chain = build_chain(load_config(run / "config.yaml", []), dtype=np.float32, with_loss=False)
    rng = np.random.default_rng(3)
    state = {
        k: np.asarray(v + rng.normal(0, 0.3, v.shape), dtype=np.float32)
        for k, v in chain.state_dict().items()
    }
    save_checkpoint(run / "checkpoints", "best", state, {}, {"step": 10})
    save_checkpoint(
        run / "checkpoints", "last", {k: np.zeros_like(v) for k, v in state.items()}, {}, {"step": 20}
    )
    chain.load_state_dict(state)
    return run, chain.eval()


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


def _onnx_session(path):
    ort = pytest.importorskip("onnxruntime", reason="checking the ONNX export needs onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _props(path) -> dict:
    import onnx

    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


def test_onnx_export_takes_raw_inputs_and_names_the_classes(run_dir, tmp_path):
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    from nncli.cli import main

    run, chain = run_dir
    out = tmp_path / "m.onnx"
    main(["export", str(run), "-o", str(out)])  # the format follows the suffix
    raw = raw_rows(9)
    want = chain.forward(standardized(raw))
    scores, pred, label = _onnx_session(out).run(None, {"input": raw.astype(np.float32)})
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(pred, want.argmax(axis=1))
    assert pred.dtype == np.int64 and list(label) == [["cat", "dog", "eel"][c] for c in pred]
    props = _props(out)
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
    session = _onnx_session(out)
    assert [o.name for o in session.get_outputs()] == ["output"]
    x = standardized(raw_rows())
    np.testing.assert_allclose(session.run(None, {"input": x})[0], chain.forward(x), rtol=1e-4, atol=1e-5)
    props = _props(out)
    assert props["preprocessing"] == {"in_graph": [], "network_only": True}
    assert props["class_names"] == ["cat", "dog", "eel"]
    assert "standardised" in props["inputs"][0]["description"]
    assert props["standardization"]["mean"][0][:3] == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "tflite"], "unknown export format 'tflite'"),
        (["--format", "torch", "-o", "m.onnx"], "a .onnx file is a onnx export"),
        (["--format", "onnx", "-o", "m.py"], "a .py file is a torch export"),
        (["--checkpoint", "first"], "'best' or 'last'"),
    ],
)
def test_conflicting_export_options_exit_2(run_dir, tmp_path, monkeypatch, capsys, args, message):
    from nncli.cli import main

    run, _ = run_dir
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (run / "export").exists() and not list(tmp_path.glob("m.*"))


def test_unknown_export_option_exits_2(run_dir, capsys):
    from nncli.cli import main

    run, _ = run_dir
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), "--bare-network"])
    assert exc.value.code == 2


def test_torch_export_never_half_written(run_dir, tmp_path):
    """The weights exist already: nothing is written, the Python file included."""
    pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    run, _ = run_dir
    (tmp_path / "m.safetensors").write_bytes(b"mine")
    with pytest.raises(UserError, match="m.safetensors: already exists; pass --force"):
        export_run(run, "torch", out=tmp_path / "m.py")
    assert not (tmp_path / "m.py").exists() and (tmp_path / "m.safetensors").read_bytes() == b"mine"


def test_export_of_a_non_run_is_a_user_error(tmp_path):
    pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    with pytest.raises(UserError, match="not a run folder"):
        export_run(tmp_path, "torch")
    with pytest.raises(ExportError, match="unknown export format"):
        export_run(tmp_path, "tflite")


# -- every registered module, at each of its own examples ---------------------------------------------------
def _registry_cases():
    return [
        pytest.param(cls, hp, shape, id=f"{name}-{i}")
        for name, cls in sorted(modules.canonical_classes().items())
        for i, (hp, shape) in enumerate(cls.examples())
    ]


def test_every_registered_module_has_an_export():
    """Each layer class says how it is written to PyTorch and to ONNX (its hooks do not return None)."""
    from nncli.export.torch_export import TorchWriter

    built = {
        name: Chain([cls(**hp)]).build(shape, np.random.default_rng(0)).modules[0]
        for name, cls in modules.canonical_classes().items()
        for hp, shape in cls.examples()[:1]
    }
    no_torch = [name for name, m in built.items() if m.torch_source(TorchWriter()) is None]
    assert no_torch == [], "give these layers a torch_spec() or torch_source()"
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    from nncli.export.onnx_export import GraphBuilder

    no_onnx = [name for name, m in built.items() if m.to_onnx(GraphBuilder(), "input", "0") is None]
    assert no_onnx == [], "give these layers a to_onnx()"


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("cls, hparams, shape", _registry_cases())
def test_each_module_example_exports_exactly(cls, hparams, shape, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    from safetensors.numpy import save_file

    from nncli.export.torch_export import write_torch_module

    rng = np.random.default_rng(5)
    chain = Chain([cls(**hparams)]).build(shape, rng, np.float32).eval()
    for _, p, _ in chain.parameters():
        p += rng.normal(0.0, 0.3, p.shape).astype(p.dtype)
    x = inputs(chain, 3)
    want = chain.forward(x)
    weights = tmp_path / "w.safetensors"
    save_file(chain.state_dict(), str(weights))
    model = import_file(
        write_torch_module(chain, weights, tmp_path / "m.py"), f"m_{cls.__name__}"
    ).load_model()
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), want, rtol=1e-4, atol=1e-5)
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    ort = pytest.importorskip("onnxruntime", reason="checking the ONNX export needs onnxruntime")
    from nncli.export.onnx_export import write_onnx

    sess = ort.InferenceSession(
        str(write_onnx(chain, tmp_path / "m.onnx")), providers=["CPUExecutionProvider"]
    )
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], want, rtol=1e-4, atol=1e-5)


# -- a run trained on a table: columns chosen, missing cells filled, categories one-hot ----------------
TABLE = {
    "format": "nncli.tabular/1",
    "columns": ["size", "city", "note", "age", "color", "label"],
    "width": 6,
    "target": {"column": "label", "index": 5},
    "inputs": [
        {"column": "size", "index": 0, "kind": "number", "fill": 41.5},
        {"column": "city", "index": 1, "kind": "onehot", "categories": ["a", "b", "c"], "fill": "b"},
        {"column": "age", "index": 3, "kind": "number", "fill": None},
        {"column": "color", "index": 4, "kind": "onehot", "categories": ["blue", "red"], "fill": None},
    ],
    "n_inputs": 7,
    "missing": "mean",
    "missing_values": ["", "NA"],
    "unknown_category": "ignore",
    "rows": {"read": 10, "dropped": 0},
}


@pytest.fixture
def table_run(tmp_path):
    """A run folder of a classifier on a table (the format above), with its standardisation."""
    from nncli.config.build import build_chain
    from nncli.config.load import load_config
    from nncli.runs.checkpoint import save_checkpoint

    run = tmp_path / "table-20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    cfg = {
        **CONFIG,
        "model": {
            "input_shape": [7],
            "layers": [{"type": "MM", "out": 5}, {"type": "Tanh"}, {"type": "MM", "out": 2}],
        },
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    stats = {"mean": [100.0, 0.3, 0.3, 0.4, 40.0, 0.5, 0.5], "std": [30.0, 0.4, 0.4, 0.5, 12.0, 0.5, 0.5]}
    data = {"standardization": stats, "class_names": ["no", "yes"], "preprocessing": TABLE}
    (run / "run.json").write_text(json.dumps({"status": "completed", "data": data}))
    chain = build_chain(load_config(run / "config.yaml", []), dtype=np.float32, with_loss=False)
    rng = np.random.default_rng(3)
    state = {
        k: np.asarray(v + rng.normal(0, 0.5, v.shape), dtype=np.float32)
        for k, v in chain.state_dict().items()
    }
    save_checkpoint(run / "checkpoints", "best", state, {}, {"step": 10})
    chain.load_state_dict(state)
    return run, chain.eval(), stats


def test_onnx_export_of_a_table_run_encodes_raw_columns(table_run, tmp_path):
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    from nncli.training.tables.encode import apply_preprocessing

    run, chain, stats = table_run
    out = export_run(run, "onnx", out=tmp_path / "t.onnx")
    numbers = np.array([[120.0, 30.0], [np.nan, 55.0], [80.0, 20.0], [150.0, 61.0], [99.0, 41.0]])
    city = np.array(["c", "NA", "b", "zzz", "a"], dtype=object)  # NA: filled with 'b'; zzz: unknown → zeros
    color = np.array(["red", "blue", "blue", "red", "green"], dtype=object)  # green: unknown → zeros
    session = _onnx_session(out)
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
    props = _props(out)
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
    session = _onnx_session(export_run(run, "onnx", out=tmp_path / "t.onnx"))
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
