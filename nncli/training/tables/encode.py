"""A fitted spec applied to raw columns: the model's inputs (N, n_inputs) float64, before standardisation
(the rules are in spec.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nncli.core.errors import DataError, did_you_mean
from nncli.training.tables.blocks import block_of
from nncli.training.tables.spec import entry_name, n_inputs


def apply_preprocessing(
    spec: dict[str, Any],
    values: Sequence[np.ndarray],
    *,
    where: str = "inputs",
    line: Callable[[int], str] | None = None,
    part: str = "",
) -> np.ndarray:
    """Raw columns → the model's inputs (N, n_inputs) float64, before standardisation.

    ``values[k]`` holds the raw values (N,) of ``spec["inputs"][k]``: numbers (float, NaN =
    missing) for a ``number`` entry, texts (str; None or a ``missing_values`` text = missing) for
    ``onehot``. ``line(i)`` says where row i is (``":12"``) in messages; ``part`` names the split.
    """
    line = line or (lambda i: f" (row {i + 1})")
    n = len(values[0]) if len(values) else 0
    base = block_of(values) if all(e["kind"] == "number" for e in spec["inputs"]) else None
    # numbers only, already one float64 block (the reader's): filled in place, no copy
    if base is not None and np.isfinite(base).all():  # the common case, checked in one pass
        return base
    out = base if base is not None else np.zeros((n, n_inputs(spec)), dtype=np.float64)
    missing_texts = set(spec.get("missing_values", ()))
    unknown = spec.get("unknown_category", "error")
    in_part = f" (in the {part} split)" if part else ""
    col = 0
    for entry, raw in zip(spec["inputs"], values, strict=True):
        name = entry_name(entry)
        if entry["kind"] == "number":
            v = np.asarray(raw, dtype=np.float64)
            miss = np.isnan(v)
            if miss.any():
                if entry["fill"] is None:
                    i = int(np.argmax(miss))
                    raise DataError(f"{where}{line(i)}: {name}: a missing value{_no_fill(spec)}")
                v = np.where(miss, entry["fill"], v)
            if np.isinf(v).any():
                i = int(np.argmax(np.isinf(v)))
                raise DataError(f"{where}{line(i)}: {name}: {v[i]:g} is not a finite number")
            if base is None or miss.any():
                out[:, col] = v
            col += 1
            continue
        cats = entry["categories"]
        index = {c: k for k, c in enumerate(cats)}
        codes = np.empty(n, dtype=np.int64)
        for i, cell in enumerate(raw):
            text = None if cell is None else str(cell).strip()
            if text is None or text in missing_texts:
                if entry["fill"] is None:
                    raise DataError(f"{where}{line(i)}: {name}: a missing value{_no_fill(spec)}")
                text = entry["fill"]
            k = index.get(text, -1)
            if k < 0 and unknown != "ignore":
                shown = ", ".join(cats[:20]) + (" …" if len(cats) > 20 else "")
                raise DataError(
                    f"{where}{line(i)}: {name}: category '{text}'{in_part} was not in the training split "
                    f"({shown}){did_you_mean(text, cats)}; data.unknown_category: ignore encodes unknown "
                    f"categories as all zeros"
                )
            codes[i] = k
        known = codes >= 0
        out[np.flatnonzero(known), col + codes[known]] = 1.0
        col += len(cats)
    return out


def _no_fill(spec: dict) -> str:
    policy = spec.get("missing", "error")
    if policy == "drop":
        return " (the run left such rows out in training, so it has no value to fill one with)"
    return "; data.missing is 'error': set it to drop, mean or median"
