"""Every registered module has a PyTorch and an ONNX translation, exact at each of its own examples."""

from __future__ import annotations

import numpy as np
import pytest
from export_cases import import_file, inputs

from nncli.core.chain import Chain
from nncli.core.registry import modules


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
