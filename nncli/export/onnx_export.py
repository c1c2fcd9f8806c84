"""Build an ONNX model (opset 17) of a chain with ``onnx.helper``, one small subgraph per module.

Input ``input`` (N, *input_shape) float32 with a symbolic batch size, output ``output``. Weights are
initializers named by their state-dict keys (``0.weight``, ``3.body.0.bias``). Each layer adds its
own nodes (``Module.to_onnx(graph, x, name)`` with the ``GraphBuilder`` below): MM as Gemm, σ as
Relu / Sigmoid / … (GELU and softplus spelled out in opset 17 ops), LN as LayerNormalization (the
notes' scalar γ, β as Mul and Add), Conv1D/2D as Conv, pooling as MaxPool / AveragePool, Flatten and
Reshape as themselves, Dropout as nothing (inference), Residual as its body's subgraph and an Add.

By default the graph also carries the run's preprocessing, so raw inputs give what ``nncli predict``
gives: ``input`` takes raw rows (N, *raw_shape) in the training data's layout, the graph subtracts the
training mean and divides by the std (``Sub``, ``Div``), reshapes to the network's input shape, and
adds outputs ``prediction`` (the class id: ``ArgMax`` of the logits, or logit > 0 for the logistic
loss) and ``label`` (the class name, ``ai.onnx.ml.LabelEncoder``) for classifiers. ``network_only``
keeps the bare network on standardised inputs with the single output ``output``. A run trained on a
table takes its number columns as ``input`` and each categorical column as a string input, encoded in
the graph as nncli encodes them (``onnx_table``). Either way the
metadata (``metadata_props``, JSON values) names the inputs and outputs with their shapes
(``inputs``, ``outputs``), what the graph applies (``preprocessing``), the class names
(``class_names``) and the statistics (``standardization``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nncli.export import unsupported
from nncli.export.preprocessing import Preprocessing

OPSET = 17
#: IR version 8 is the one that came with opset 17: runtimes from that time on can load the file
IR_VERSION = 8
#: the ai.onnx.ml opset of LabelEncoder-2 (class ids to names), as old as opset 17's runtimes
ML_OPSET = 3


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


def onnx_model(chain, name: str = "nncli", prep: Preprocessing | None = None, *, network_only: bool = False):
    """The checked ``onnx.ModelProto`` of ``chain`` (float32, dynamic batch ``N``).

    ``prep`` (``Preprocessing.of_run``): the run's standardisation and class names; None means a
    chain without either (its loss, if any, still gives the ``prediction`` output). With
    ``network_only`` the graph is the bare network on preprocessed inputs (see the module docstring).
    """
    import onnx
    from onnx import helper

    if prep is None:
        loss = getattr(chain, "loss", None)
        prep = Preprocessing(tuple(chain.input_shape), getattr(loss, "target_kind", "real"))
    b = GraphBuilder()
    if network_only:
        inputs = [_input("input", "float32", ["N", *chain.input_shape], _input_text(prep, True))]
        x = "input"
    elif prep.table is not None:
        from nncli.export.onnx_table import encode_table, table_inputs

        inputs = table_inputs(prep.table)
        x = _standardize(b, encode_table(b, prep.table, inputs), prep)
    else:
        inputs = [_input("input", "float32", ["N", *prep.raw_shape], _input_text(prep, False))]
        x = _standardize(b, "input", prep)
    out = b.subgraph(chain.modules, x)
    # a graph output cannot be the graph input itself (a chain of only Dropout): add an Identity
    b.nodes.append(helper.make_node("Identity", [out], ["output"], name="output"))
    outputs = [("output", "float32", ["N", *chain.output_shape()], _scores_text(prep))]
    if not network_only and prep.classifier:
        outputs += _prediction(b, "output", prep)
    graph = helper.make_graph(
        b.nodes,
        name,
        [_value_info(s["name"], s["dtype"], s["shape"], s["description"]) for s in inputs],
        [_value_info(*spec) for spec in outputs],
        initializer=b.inits,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if any(n.domain == "ai.onnx.ml" for n in b.nodes):
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    model = helper.make_model(graph, producer_name="nncli", opset_imports=opsets)
    model.ir_version = IR_VERSION
    model.producer_version = _version()
    model.doc_string = f"nncli model {name}; see the metadata 'inputs', 'outputs' and 'preprocessing'"
    helper.set_model_props(model, _metadata(prep, inputs, outputs, network_only))
    onnx.checker.check_model(model, full_check=True)
    return model


def _input(name: str, dtype: str, shape: list, description: str) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape, "description": description}


def _standardize(b: GraphBuilder, x: str, prep: Preprocessing) -> str:
    """Nodes taking inputs (N, *encoded_shape) to the network's (N, *input_shape): (x − mean) / std."""
    if prep.standardize:
        x = b.node("Sub", [x, b.const("preprocess/mean", prep.mean)], "preprocess")
        x = b.node("Div", [x, b.const("preprocess/std", prep.std)], "preprocess")
    if prep.encoded_shape != prep.input_shape:
        target = b.const("preprocess/shape", [-1, *prep.input_shape], dtype=np.int64)
        x = b.node("Reshape", [x, target], "preprocess")
    return x


def _prediction(b: GraphBuilder, scores: str, prep: Preprocessing) -> list[tuple]:
    """Outputs ``prediction`` (N,) int64 as the loss's ``predict`` and, with class names, ``label``."""
    from onnx import helper

    if prep.target_kind == "binary":  # one logit: class 1 when h > 0
        flat = b.node("Reshape", [scores, b.const("predict/flat", [-1], dtype=np.int64)], "predict")
        positive = b.node("Greater", [flat, b.scalar("predict", "zero", 0.0)], "predict")
        b.nodes.append(helper.make_node("Cast", [positive], ["prediction"], name="prediction", to=7))
    else:  # softmax over the logits: the largest one
        b.nodes.append(
            helper.make_node("ArgMax", [scores], ["prediction"], name="prediction", axis=1, keepdims=0)
        )
    specs = [("prediction", "int64", ["N"], "the predicted class id, as nncli predict (0 … C-1)")]
    if prep.class_names is not None:
        b.nodes.append(
            helper.make_node(
                "LabelEncoder",
                ["prediction"],
                ["label"],
                name="label",
                domain="ai.onnx.ml",
                keys_int64s=list(range(len(prep.class_names))),
                values_strings=list(prep.class_names),
                default_string="",
            )
        )
        specs.append(("label", "string", ["N"], "the predicted class's name (metadata 'class_names')"))
    return specs


def _value_info(name: str, dtype: str, shape: list, doc: str):
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "string": TensorProto.STRING}[dtype]
    return helper.make_tensor_value_info(name, elem, shape, doc_string=doc)


def _input_text(prep: Preprocessing, network_only: bool) -> str:
    if network_only and prep.table is not None:
        return (
            "the table's encoded inputs (metadata 'table_preprocessing'), standardised if 'standardization'"
        )
    if network_only and prep.standardize:
        return "standardised inputs: (x - mean) / std with the metadata 'standardization'"
    if prep.standardize:
        return "raw inputs, as in the training data; the graph standardises them"
    return "inputs, as in the training data (the run did not standardise them)"


def _scores_text(prep: Preprocessing) -> str:
    return {
        "class": "the logits h (softmax(h) gives the class probabilities)",
        "binary": "the logit h (sigmoid(h) is the probability of class 1)",
    }.get(prep.target_kind, "the model's outputs")


def _metadata(prep: Preprocessing, inputs: list[dict], outputs: list[tuple], network_only: bool) -> dict:
    """``metadata_props``: every value a JSON document."""
    import json

    steps = [] if network_only or prep.table is None else ["select_columns", "fill_missing", "one_hot"]
    if prep.standardize and not network_only:
        steps.append("standardize")
    props: dict[str, Any] = {
        "inputs": inputs,
        "outputs": [_input(*spec) for spec in outputs],
        "preprocessing": {"in_graph": steps, "network_only": network_only},
        "target_kind": prep.target_kind,
    }
    if prep.class_names is not None:
        props["class_names"] = list(prep.class_names)
    if prep.standardize:
        props["standardization"] = prep.stats_json()
    if prep.table is not None:
        props["table_preprocessing"] = prep.table
    return {k: json.dumps(v) for k, v in props.items()}


def _version() -> str:
    from nncli._version import __version__

    return __version__


def write_onnx(
    chain, out: Path | str, name: str = "nncli", prep: Preprocessing | None = None, *, network_only=False
) -> Path:
    import onnx

    out = Path(out)
    onnx.save(onnx_model(chain, name, prep, network_only=network_only), str(out))
    return out
