"""Build an ONNX model (opset 17) of a chain with ``onnx.helper``, one small subgraph per module.

Input ``input`` (N, *input_shape) float32 with a symbolic batch size, output ``output``. Weights are
initializers named by their state-dict keys (``0.weight``, ``3.body.0.bias``). Translations:

    MM          Gemm(z, W, b, transB=1)                      u = z Wᵀ + b  (eq. 7.36)
    σ           Relu / Sigmoid / Tanh / LeakyRelu / Identity; GELU as 0.5·z·(1 + Erf(z/√2)) (opset 17
                has no Gelu); softplus as Softplus(βz)/β, and z where βz > threshold, as PyTorch
    LN          LayerNormalization over every per-example axis (axis=1), σ̂ = √(σ̂² + ε) as nncli;
                per-feature affine as its Scale/B; the notes' scalar γ, β (eq. 7.43) as
                LayerNormalization with unit Scale, then Mul by γ and Add β (0-d tensors)
    Conv1D/2D   Conv with kernel_shape, strides, pads (begin…, end…), dilations
    pooling     MaxPool / AveragePool (count_include_pad=1: nncli counts padded zeros in the mean)
    Flatten     Flatten(axis=1);  Reshape: Reshape to (-1, *shape)
    Dropout     nothing (inference)
    Residual    the body's subgraph, then Add(z, body(z))

Like nncli's forward, the model takes standardised inputs; the run's training mean and std are in
the model's metadata (``standardization``, JSON) for whoever feeds it raw data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
        from onnx import helper

        self._n += 1
        out = f"{prefix}/{op}_{self._n}" if prefix else f"{op}_{self._n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, name: str, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name))
        return name

    def scalar(self, prefix: str, tag: str, value: float) -> str:
        return self.const(f"{prefix}/{tag}" if prefix else tag, value)


def _mm(b, m, name, x):
    ins = [x, b.const(f"{name}.weight", m.params["weight"])]
    if m.cfg.bias:
        ins.append(b.const(f"{name}.bias", m.params["bias"]))
    return b.node("Gemm", ins, name, transB=1)


def _sigma(b, m, name, x):
    c = m.cfg
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity"}
    if c.fn in simple:
        return b.node(simple[c.fn], [x], name)
    if c.fn == "leaky_relu":
        return b.node("LeakyRelu", [x], name, alpha=float(c.negative_slope))
    if c.fn == "softplus":
        bx = b.node("Mul", [x, b.scalar(name, "beta", c.beta)], name)
        soft = b.node("Div", [b.node("Softplus", [bx], name), b.scalar(name, "beta_div", c.beta)], name)
        linear = b.node("Greater", [bx, b.scalar(name, "threshold", c.threshold)], name)
        return b.node("Where", [linear, x, soft], name)
    # gelu: 0.5·z·(1 + Erf(z/√2)), or the tanh form 0.5·z·(1 + tanh(√(2/π)(z + 0.044715 z³)))
    if c.approximate == "tanh":
        cube = b.node("Mul", [b.node("Mul", [x, x], name), x], name)
        inner = b.node("Add", [x, b.node("Mul", [cube, b.scalar(name, "k", 0.044715)], name)], name)
        t = b.node("Tanh", [b.node("Mul", [inner, b.scalar(name, "c", math.sqrt(2 / math.pi))], name)], name)
    else:
        t = b.node("Erf", [b.node("Div", [x, b.scalar(name, "sqrt2", math.sqrt(2.0))], name)], name)
    half_x = b.node("Mul", [x, b.scalar(name, "half", 0.5)], name)
    return b.node("Mul", [half_x, b.node("Add", [t, b.scalar(name, "one", 1.0)], name)], name)


def _ln(b, m, name, x):
    shape, affine = tuple(m.input_shape), m.cfg.affine
    if affine == "per_feature":
        scale = b.const(f"{name}.weight", m.params["weight"])
        ins = [x, scale, b.const(f"{name}.bias", m.params["bias"])]
    else:
        ins = [x, b.const(f"{name}/unit_scale", np.ones(shape))]
    y = b.node("LayerNormalization", ins, name, axis=1, epsilon=float(m.cfg.eps))
    if affine == "scalar":
        y = b.node("Mul", [y, b.const(f"{name}.weight", m.params["weight"])], name)
        y = b.node("Add", [y, b.const(f"{name}.bias", m.params["bias"])], name)
    return y


def _conv(b, m, name, x):
    g = m.geom
    ins = [x, b.const(f"{name}.weight", m.params["weight"])]
    if m.cfg.bias:
        ins.append(b.const(f"{name}.bias", m.params["bias"]))
    return b.node(
        "Conv",
        ins,
        name,
        kernel_shape=list(g.kernel),
        strides=list(g.stride),
        pads=list(g.pad_lo) + list(g.pad_hi),
        dilations=list(g.dilation),
    )


def _pool(b, m, name, x):
    g = m.geom
    attrs = dict(kernel_shape=list(g.kernel), strides=list(g.stride), pads=list(g.pad_lo) + list(g.pad_hi))
    if "Max" in type(m).__name__:
        return b.node("MaxPool", [x], name, **attrs)  # padding never wins, as nncli's −inf
    return b.node("AveragePool", [x], name, count_include_pad=1, **attrs)  # zeros counted in K


def _flatten(b, m, name, x):
    return b.node("Flatten", [x], name, axis=1)


def _reshape(b, m, name, x):
    target = [-1] + [int(s) for s in m.output_shape(m.input_shape)]
    return b.node("Reshape", [x, b.const(f"{name}/shape", target, dtype=np.int64)], name)


def _dropout(b, m, name, x):
    return x  # identity at inference


def _residual(b, m, name, x):
    y = subgraph(b, m.body.modules, x, prefix=f"{name}.body.")
    return b.node("Add", [x, y], name)


#: nncli module class name → function(builder, module, state-dict prefix, input name) → output name
TRANSLATORS: dict[str, Callable] = {
    "MM": _mm,
    "Sigma": _sigma,
    "LN": _ln,
    "Conv1D": _conv,
    "Conv2D": _conv,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": _dropout,
    "Residual": _residual,
    "MaxPool1D": _pool,
    "MaxPool2D": _pool,
    "AvgPool1D": _pool,
    "AvgPool2D": _pool,
}


def subgraph(b: GraphBuilder, modules, x: str, prefix: str = "") -> str:
    for i, m in enumerate(modules):
        tr = TRANSLATORS.get(type(m).__name__)
        if tr is None:
            raise unsupported(m, "ONNX")
        x = tr(b, m, f"{prefix}{i}", x)
    return x


def onnx_model(chain, name: str = "nncli", stats: dict | None = None):
    """The checked ``onnx.ModelProto`` of ``chain`` (float32, dynamic batch).

    The model takes standardised inputs, as nncli's forward; ``stats`` (the run's training mean/std)
    go into the metadata as JSON under ``standardization`` so a user can apply them.
    """
    import onnx
    from onnx import TensorProto, helper

    b = GraphBuilder()
    out = subgraph(b, chain.modules, "input")
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
