"""Build an ONNX model (opset 17) of a chain with ``onnx.helper``, one small subgraph per module.

Input ``input`` (N, *input_shape) float32 with a symbolic batch size, output ``output``. Weights are
initializers named by their state-dict keys (``0.weight``, ``3.body.0.bias``). Each layer adds its
own nodes (``Module.to_onnx(graph, x, name)`` with the ``GraphBuilder`` below): MM as Gemm, σ as
Relu / Sigmoid / … (GELU and softplus spelled out in opset 17 ops), LN as LayerNormalization (the
notes' scalar γ, β as Mul and Add), Conv1D/2D as Conv, pooling as MaxPool / AveragePool, Flatten and
Reshape as themselves, Dropout as nothing (inference), Residual as its body's subgraph and an Add.

Like nncli's forward, the model takes standardised inputs; the run's training mean and std are in
the model's metadata (``standardization``, JSON) for whoever feeds it raw data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.export import unsupported

OPSET = 17
#: IR version 8 is the one that came with opset 17: runtimes from that time on can load the file
IR_VERSION = 8


class GraphBuilder:
    """Collects nodes and initializers; every node gets a fresh, readable output name."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], [], 0

    def node(self, op: str, inputs: list[str], prefix: str, **attrs) -> str:
        """Add node ``op`` on ``inputs`` (tensor names) with ONNX ``attrs``; its output's name, which
        starts with ``prefix`` (the layer's state-dict prefix)."""
        from onnx import helper

        self._n += 1
        out = f"{prefix}/{op}_{self._n}" if prefix else f"{op}_{self._n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, name: str, value, dtype=np.float32) -> str:
        """Add ``value`` as an initializer called ``name`` (a parameter's state-dict key); ``name``."""
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name))
        return name

    def scalar(self, prefix: str, tag: str, value: float) -> str:
        """A 0-d float constant named ``prefix/tag``."""
        return self.const(f"{prefix}/{tag}" if prefix else tag, value)

    def subgraph(self, modules, x: str, prefix: str = "") -> str:
        """Each module's nodes in turn (``Module.to_onnx``), from input ``x``; the last output's name."""
        for i, m in enumerate(modules):
            y = m.to_onnx(self, x, f"{prefix}{i}")
            if y is None:
                raise unsupported(m, "ONNX")
            x = y
        return x


def onnx_model(chain, name: str = "nncli", stats: dict | None = None):
    """The checked ``onnx.ModelProto`` of ``chain`` (float32, dynamic batch).

    The model takes standardised inputs, as nncli's forward; ``stats`` (the run's training mean/std)
    go into the metadata as JSON under ``standardization`` so a user can apply them.
    """
    import onnx
    from onnx import TensorProto, helper

    b = GraphBuilder()
    out = b.subgraph(chain.modules, "input")
    # a graph output cannot be the graph input itself (a chain of only Dropout): add an Identity
    b.nodes.append(helper.make_node("Identity", [out], ["output"], name="output"))
    graph = helper.make_graph(
        b.nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *chain.input_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *chain.output_shape()])],
        initializer=b.inits,
    )
    model = helper.make_model(graph, producer_name="nncli", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if stats is not None:
        import json

        helper.set_model_props(
            model, {"standardization": json.dumps({"mean": stats["mean"], "std": stats["std"]})}
        )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(chain, out: Path | str, name: str = "nncli", stats: dict | None = None) -> Path:
    import onnx

    out = Path(out)
    onnx.save(onnx_model(chain, name, stats), str(out))
    return out
