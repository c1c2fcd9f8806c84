"""A layer is one file. A throw-away layer file is dropped into the layers folder (a temporary folder
added to ``nncli.core.layers.__path__``, so the source tree is never touched) and, with no other edit,
it is registered, gradchecked by the registry-wide checks, shown by ``nncli inspect`` and its trace,
exported to PyTorch and ONNX with the same outputs as nncli, and cross-checked with PyTorch.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys

import numpy as np
import pytest
from support import write_config

import nncli.core.layers as layers_package
from nncli.core.registry import modules

#: the whole layer: u = α z^p elementwise with a learnable scalar α, written as any layer file is
LAYER_FILE = '''
"""ScaledPower: u = α z^p elementwise, α a learnable scalar (``weight``)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from nncli.core.module import HParams, Module
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec


class ScaledPowerConfig(HParams):
    power: int = Field(3, ge=1, description="the exponent p")


#: torch has no such layer: the class the exported file defines and the cross-check runs
TORCH_SCALED_POWER = """
class ScaledPower(nn.Module):
    def __init__(self, power):
        super().__init__()
        self.power = power
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.weight * x**self.power
"""


@modules.register("ScaledPower", "Cube")
class ScaledPower(Module):
    """u = α z^p, any shape. Backward: ∂J/∂z = α p z^(p−1) ⊙ v, ∂J/∂α = Σ v ⊙ z^p."""

    Config = ScaledPowerConfig

    def init_params(self, rng):
        return {"weight": np.ones(())}

    def forward(self, z):
        self._z = z
        return self.params["weight"] * z**self.cfg.power

    def backward(self, v):
        p, z = self.cfg.power, self._z
        self.grads["weight"] += np.sum(v * z**p)
        return v * (self.params["weight"] * p) * z ** (p - 1)

    def describe(self):
        d, p = int(np.prod(self.input_shape)), self.cfg.power
        return {"formula": "α = 1", "macs_forward": p * d, "macs_backward": (p + 2) * d, "saved": d}

    @classmethod
    def examples(cls):
        return [({}, (4,)), ({"power": 2}, (2, 3))]

    def trace_equations(self):
        return ("u = α z^p", "∂J/∂z = α p z^(p−1) ⊙ v, ∂J/∂α = Σ v ⊙ z^p")

    def torch_spec(self):
        return TorchSpec("ScaledPower", (self.cfg.power,), helper_source=TORCH_SCALED_POWER)

    def to_onnx(self, graph, x, name):
        zp = graph.node("Pow", [x, graph.scalar(name, "p", float(self.cfg.power))], name)
        return graph.node("Mul", [zp, graph.const(f"{name}.weight", self.params["weight"])], name)
'''

CONFIG = """\
name: with_a_new_layer
dtype: float32
model:
  input_shape: [4]
  layers:
    - {type: MM, out: 3}
    - {type: cube}
    - {type: MM, out: 2}
loss: cross_entropy
"""

MODULE = f"{layers_package.__name__}.scaled_power"


@pytest.fixture
def new_layer(tmp_path, monkeypatch):
    """The layer file placed in the layers folder and the folder's files imported, as at start-up."""
    folder = tmp_path / "layers"
    folder.mkdir()
    (folder / "scaled_power.py").write_text(LAYER_FILE)
    monkeypatch.setattr(layers_package, "__path__", [*layers_package.__path__, str(folder)])
    importlib.invalidate_caches()
    layers_package.import_layer_files()
    cls = sys.modules[MODULE].ScaledPower
    try:
        yield cls
    finally:
        modules.unregister(cls)
        sys.modules.pop(MODULE, None)
        if hasattr(layers_package, "scaled_power"):
            delattr(layers_package, "scaled_power")


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path, CONFIG)


def test_the_file_registers_the_layer_and_unregistering_forgets_it(new_layer):
    assert modules.lookup("cube") is new_layer is modules.lookup("ScaledPower")
    assert modules.canonical_classes()["ScaledPower"] is new_layer
    modules.unregister(new_layer)
    assert "ScaledPower" not in modules.canonical_classes()
    with pytest.raises(Exception, match="unknown layer type 'cube'"):
        modules.lookup("cube")


def test_registry_wide_gradcheck_covers_it(new_layer, nncli_main):
    """`nncli gradcheck` with no config checks every registered type: the new one included."""
    run = nncli_main("gradcheck", "--json")
    assert run.code == 0, run
    result = json.loads(run.out)
    assert result["passed"] is True
    mine = [r for r in result["tensors"] if r["module"] == "ScaledPower"]
    assert {r["tensor"] for r in mine} == {"input", "weight"}
    assert len({r["setting"] for r in mine}) == len(new_layer.examples())
    assert all(r["passed"] for r in mine)


def test_the_registry_tests_pass_for_it(new_layer):
    """The parametrised registry-wide tests (collected before this layer existed), run for it."""
    import test_modules_registry as registry_tests

    for hp, shape in new_layer.examples():
        registry_tests.test_gradcheck_every_module(new_layer, hp, shape, "train")
        registry_tests.test_shapes_dtype_and_protocol(new_layer, hp, shape)
        registry_tests.test_backward_accumulates(new_layer, hp, shape)
        registry_tests.test_matches_torch(new_layer, hp, shape, "train")  # skips without torch


def test_inspect_shows_its_row_counts_and_trace(new_layer, config, nncli_main):
    run = nncli_main("inspect", config, "--trace", "--json", "--batch", "5")
    assert run.code == 0, run
    result = json.loads(run.out)
    rows = result["summary"]["rows"]
    assert [r["type"] for r in rows] == ["MM", "ScaledPower", "MM"]
    row = rows[1]
    assert (row["input_shape"], row["output_shape"], row["weight"], row["bias"]) == ([3], [3], 1, 0)
    assert (row["formula"], row["macs_forward"], row["macs_backward"], row["saved"]) == ("α = 1", 9, 15, 3)
    assert row["line"] == CONFIG.splitlines().index("    - {type: cube}") + 1
    assert result["summary"]["params"] == (4 * 3 + 3) + 1 + (3 * 2 + 2)
    trace = result["trace"]["modules"][1]
    assert (trace["type"], trace["forward_eq"]) == ("ScaledPower", "u = α z^p")
    assert trace["backward_eq"].startswith("∂J/∂z = α p z^(p−1)")
    assert trace["grads"]["weight"]["shape"] == [] and trace["grads"]["weight"]["norm"] > 0
    assert trace["dz"]["shape"] == [5, 3]


def _trained_like_chain(config):
    """The config's chain in float32 with weights moved off their init (α ≠ 1), in eval mode."""
    from nncli.diagnostics.summary import build_from_config

    _, chain = build_from_config(str(config), dtype="float32", with_loss=False)
    rng = np.random.default_rng(3)
    for _, p, _ in chain.parameters():
        p += rng.normal(0.0, 0.3, p.shape).astype(p.dtype)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    return chain.eval(), x


def test_export_to_pytorch_computes_nncli_forward(new_layer, config, tmp_path):
    torch = pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    from safetensors.numpy import save_file

    from nncli.export.torch_export import write_torch_module

    chain, x = _trained_like_chain(config)
    weights = tmp_path / "w.safetensors"
    save_file(chain.state_dict(), str(weights))
    path = write_torch_module(chain, weights, tmp_path / "model.py")
    assert "class ScaledPower(nn.Module)" in path.read_text()
    spec = importlib.util.spec_from_file_location("exported_scaled_power", path)
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    with torch.no_grad():
        got = exported.load_model()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, chain.forward(x), rtol=1e-5, atol=1e-6)


def test_export_to_onnx_computes_nncli_forward(new_layer, config, tmp_path):
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    ort = pytest.importorskip("onnxruntime", reason="checking the ONNX export needs onnxruntime")
    from nncli.export.onnx_export import write_onnx

    chain, x = _trained_like_chain(config)
    path = write_onnx(chain, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], chain.forward(x), rtol=1e-5, atol=1e-6)
