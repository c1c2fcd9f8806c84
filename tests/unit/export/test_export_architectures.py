"""Architectures covering every exported module type and option: the PyTorch file and the ONNX
model compute nncli's forward, load strictly, and use the named ops and weights."""

from __future__ import annotations

import numpy as np
import pytest
from export_cases import import_file, inputs

from nncli.core.chain import Chain
from nncli.core.registry import modules

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
