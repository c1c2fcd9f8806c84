"""What the export tests (``tests/unit/export/``) share: inputs for a chain, importing a generated
model file, the configs of the fixture runs, and reading an ONNX file back.

    inputs(chain, n, seed)     (n, *input_shape) float32 inputs
    import_file(path, name)    a generated PyTorch file, imported as a module
    CONFIG, TABLE              the fixture runs' config and the table run's preprocessing (nncli.tabular/1)
    onnx_session(path)         an onnxruntime session on the CPU (skips without onnxruntime)
    metadata_props(path)       an ONNX file's metadata, each value read as JSON
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from nncli.core.chain import Chain


def inputs(chain: Chain, n: int = 7, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *chain.input_shape)).astype(np.float32)


def import_file(path, name="exported_model"):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: the config of the fixture runs (``run_dir``; ``table_run`` with its own model)
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


def onnx_session(path):
    ort = pytest.importorskip("onnxruntime", reason="checking the ONNX export needs onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def metadata_props(path) -> dict:
    import onnx

    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


#: the table run's preprocessing (run.json ``data.preprocessing``): columns chosen, missing cells
#: filled, categories one-hot
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
