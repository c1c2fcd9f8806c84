"""The ONNX inputs of a run trained on a table, and the nodes that encode them as nncli does.

A table run's preprocessing (run.json ``data.preprocessing``, format ``nncli.tabular/1``, see
``nncli.training.tables.spec``) lists the model's inputs in order: ``number`` columns (one input each)
and ``onehot`` columns (one input per training category). ONNX tensors hold one type, so the graph
takes:

- ``input``: float32 (N, n_numbers), the number columns in the run's input order (dropped columns and
  the label are not inputs). A missing cell is NaN; it becomes the column's training ``fill``
  (``Where(IsNaN)``), or stays NaN (and so do the outputs) when the run has no fill (``missing: error``
  or ``drop``, where ``nncli predict`` refuses the row);
- one string tensor (N,) per categorical column, named after the column: its category texts, as
  written in the file (nncli strips surrounding spaces; strip them before feeding the graph).
  ``ai.onnx.ml.OneHotEncoder`` compares them with the training categories; a ``missing_values`` text
  becomes the ``fill`` category (a constant ``MatMul``); an unknown text gives all zeros with
  ``unknown_category: ignore``, and makes onnxruntime refuse the batch with ``error``, as nncli does.

The encoded pieces are concatenated in the run's input order (``Concat``); the standardisation and
the network follow.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

#: graph names a column cannot take (the graph's other inputs and outputs)
RESERVED = {"input", "output", "prediction", "label"}


def table_inputs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The graph inputs for ``spec``: ``{"name", "dtype", "shape", "columns" | "column",
    "categories"}`` in order, the float ``input`` first (when the table has number columns)."""
    numbers = [e for e in spec["inputs"] if e["kind"] == "number"]
    specs: list[dict[str, Any]] = []
    if numbers:
        specs.append(
            {
                "name": "input",
                "dtype": "float32",
                "shape": ["N", len(numbers)],
                "columns": [_column(e) for e in numbers],
                "description": "the number columns, raw, in this order; NaN for a missing cell",
            }
        )
    taken = set(RESERVED)
    for e in spec["inputs"]:
        if e["kind"] != "onehot":
            continue
        name = _input_name(e, taken)
        taken.add(name)
        specs.append(
            {
                "name": name,
                "dtype": "string",
                "shape": ["N"],
                "column": _column(e),
                "categories": list(e["categories"]),
                "description": "a categorical column's texts, one-hot encoded in the graph",
            }
        )
    return specs


def encode_table(b, spec: dict[str, Any], inputs: list[dict[str, Any]]) -> str:
    """Nodes from the table inputs to the encoded (N, n_inputs) float tensor; its name."""
    from onnx import helper

    numbers = [e for e in spec["inputs"] if e["kind"] == "number"]
    x = "input"
    fills = [np.nan if e["fill"] is None else float(e["fill"]) for e in numbers]
    if numbers and any(np.isfinite(fills)):
        missing = b.node("IsNaN", [x], "preprocess")
        x = b.node("Where", [missing, b.const("preprocess/fill", fills), x], "preprocess")
    strings = iter(s["name"] for s in inputs if s["dtype"] == "string")
    pieces: list[str] = []
    run: list[int] = []  # consecutive number columns, gathered at once
    k = 0
    for e in spec["inputs"]:
        if e["kind"] == "number":
            run.append(k)
            k += 1
            continue
        if run:
            pieces.append(_gather(b, x, run, len(numbers)))
            run = []
        pieces.append(_one_hot(b, next(strings), e, spec))
    if run:
        pieces.append(_gather(b, x, run, len(numbers)))
    if len(pieces) == 1:
        return pieces[0]
    out = f"preprocess/encoded_{len(b.nodes)}"
    b.nodes.append(helper.make_node("Concat", pieces, [out], name=out, axis=1))
    return out


def _gather(b, x: str, columns: list[int], n_numbers: int) -> str:
    if columns == list(range(n_numbers)):
        return x
    idx = b.const(f"preprocess/columns_{columns[0]}", columns, dtype=np.int64)
    return b.node("Gather", [x, idx], "preprocess", axis=1)


def _one_hot(b, x: str, entry: dict[str, Any], spec: dict[str, Any]) -> str:
    """(N,) texts → (N, len(categories)) float: 1 at the training category, missing → ``fill``."""
    from onnx import helper

    cats = [str(c) for c in entry["categories"]]
    extra = []
    if entry["fill"] is not None:
        extra = [t for t in dict.fromkeys(spec.get("missing_values", ())) if t not in cats]
    out = f"preprocess/onehot_{len(b.nodes)}"
    b.nodes.append(
        helper.make_node(
            "OneHotEncoder",
            [x],
            [out],
            name=out,
            domain="ai.onnx.ml",
            cats_strings=cats + extra,
            zeros=1 if spec.get("unknown_category", "error") == "ignore" else 0,
        )
    )
    if not extra:
        return out
    # the missing texts' columns are added onto the fill category's column
    fold = np.zeros((len(cats) + len(extra), len(cats)))
    fold[np.arange(len(cats)), np.arange(len(cats))] = 1.0
    fold[len(cats) :, cats.index(str(entry["fill"]))] = 1.0
    return b.node("MatMul", [out, b.const(f"{out}/fold", fold)], "preprocess")


def _column(entry: dict[str, Any]) -> str:
    return str(entry["column"]) if entry.get("column") is not None else f"column {entry['index']}"


def _input_name(entry: dict[str, Any], taken: set[str]) -> str:
    """The column's name when it cannot clash with a tensor of the graph (those contain '/' or
    start with a layer index: ``0.weight``), else ``column_<index>``."""
    name = entry.get("column")
    if isinstance(name, str) and name and name not in taken and "/" not in name and not re.match(r"\d", name):
        return name
    name, n = f"column_{entry['index']}", 0
    while name in taken:
        n += 1
        name = f"column_{entry['index']}_{n}"
    return name
