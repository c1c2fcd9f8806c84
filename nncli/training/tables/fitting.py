"""The training split's statistics in the spec: one-hot categories and fill values (``data.missing``:
``mean`` / ``median``), never looking at the validation or test rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from nncli.core.errors import DataError
from nncli.training.tables.prepared import Prepared
from nncli.training.tables.spec import entry_name, n_inputs


def fit(prep: Prepared, train_rows: np.ndarray) -> dict[str, Any]:
    """The spec with the training split's statistics: one-hot categories and fill values."""
    spec = {**prep.spec, "inputs": [dict(i) for i in prep.spec["inputs"]]}
    policy = spec["missing"]
    for entry, values in zip(spec["inputs"], prep.inputs, strict=True):
        name = entry_name(entry)
        if entry["kind"] == "number":
            if policy in ("mean", "median"):  # kept even without a gap in training: predict may meet one
                part = values[train_rows]
                present = part[~np.isnan(part)]
                if not len(present):
                    raise DataError(
                        f"{prep.where}: {name} has no value in the training split to take the {policy} of",
                        field="data.missing",
                    )
                entry["fill"] = float(np.mean(present) if policy == "mean" else np.median(present))
            continue
        present = np.array([v for v in values[train_rows] if v is not None], dtype=object)
        if not len(present):
            raise DataError(
                f"{prep.where}: {name} has no category in the training split", field="data.categorical"
            )
        cats, counts = np.unique(present.astype(str), return_counts=True)
        entry["categories"] = [str(c) for c in cats]
        if policy in ("mean", "median"):
            entry["fill"] = str(cats[int(np.argmax(counts))])  # the most frequent (first in order on ties)
    spec["n_inputs"] = n_inputs(spec)
    return spec
