"""The run's preprocessing: run.json ``data.preprocessing`` (format ``nncli.tabular/1``), plain JSON::

    {"format": "nncli.tabular/1",
     "columns": ["size", "age", "city", "note", "label"],   # the training file's header, or null
     "width": 5,                                            # its number of columns
     "target": {"column": "label", "index": 4},             # column is null without a header
     "inputs": [                                            # in the model's input order
       {"column": "size", "index": 0, "kind": "number", "fill": null},
       {"column": "age",  "index": 1, "kind": "number", "fill": 41.5},
       {"column": "city", "index": 2, "kind": "onehot", "categories": ["a", "b"], "fill": null}],
     "n_inputs": 4,                                         # numbers + Σ len(categories)
     "missing": "mean", "missing_values": ["", "NA", ...], "unknown_category": "error",
     "rows": {"read": 100, "dropped": 0}}

A raw row becomes the model's input vector as follows (``apply_preprocessing``; then the training
split's standardisation, run.json ``data.standardization``: (v − mean) / std over all n_inputs):

- ``number``: the cell as a float; a missing cell (NaN, or a ``missing_values`` text) becomes
  ``fill``, or is an error when ``fill`` is null; ±inf is an error. One input.
- ``onehot``: the stripped cell text compared with ``categories`` (sorted training categories):
  ``len(categories)`` inputs, 1 at the match and 0 elsewhere; missing → ``fill`` (or an error);
  a text not in ``categories`` → all zeros with ``unknown_category: ignore``, else an error.

A file being predicted is matched by column name when the run's file had a header (other columns
are ignored), else by position (``width`` columns, or ``width − 1`` without the target's).
"""

from __future__ import annotations

from typing import Any

FORMAT = "nncli.tabular/1"


def n_inputs(spec: dict[str, Any]) -> int:
    """The model's input width: one per ``number`` entry, one per category of a ``onehot`` entry."""
    return sum(1 if e["kind"] == "number" else len(e["categories"]) for e in spec["inputs"])


def entry_name(entry: dict) -> str:
    """How an input is named in messages: ``column 3 ('city')`` or ``column 3``."""
    return f"column {entry['index'] + 1}" + (f" ('{entry['column']}')" if entry.get("column") else "")
