"""A chunk of predictions as output rows: the columns, class names or ids, and the class
probabilities (softmax, or sigmoid for the logistic loss) that ``--proba`` adds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from nncli.runs.loaded_run import LoadedRun


def class_names(loaded: LoadedRun) -> list[str] | None:
    """The class names the run saved (run.json ``data.class_names``), or None (class ids are used)."""
    names = (loaded.info.get("data") or {}).get("class_names")
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _n_classes(loaded: LoadedRun) -> int:
    shape = tuple(loaded.chain.output_shape())
    return 2 if loaded.chain.loss.target_kind == "binary" else int(shape[-1])


def output_columns(loaded: LoadedRun, proba: bool) -> list[str]:
    if not loaded.classifier:
        size = int(np.prod(loaded.chain.output_shape()))
        return ["prediction"] if size == 1 else [f"prediction_{i}" for i in range(size)]
    names = class_names(loaded) or [str(i) for i in range(_n_classes(loaded))]
    return ["prediction"] + ([f"p_{n}" for n in names] if proba else [])


def probabilities(loaded: LoadedRun, h: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) from the model's outputs: softmax for cross-entropy, sigmoid (as
    [1 − p, p]) for the logistic loss."""
    h = np.asarray(h, dtype=np.float64)
    if loaded.chain.loss.target_kind == "binary":
        p1 = 1.0 / (1.0 + np.exp(-np.clip(h.reshape(len(h)), -700, 700)))
        return np.stack([1.0 - p1, p1], axis=1)
    z = h.reshape(len(h), -1)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict_chunk(loaded: LoadedRun, x: np.ndarray, proba: bool):
    """(predictions, class probabilities or None) of the raw inputs ``x``: the run's ``scores`` through
    its loss's ``predict`` (the outputs themselves without a loss)."""
    h = loaded.scores(x)
    pred = loaded.chain.loss.predict(h) if loaded.chain.loss is not None else h
    return pred, (probabilities(loaded, h) if proba else None)


def concat_predictions(preds: list[np.ndarray], loaded: LoadedRun) -> np.ndarray:
    """The chunks' predictions as one array (an empty one of the right shape for no chunk)."""
    if preds:
        return np.concatenate(preds)
    return np.empty((0,) if loaded.classifier else (0, *loaded.chain.output_shape()))


def output_rows(loaded: LoadedRun, x: np.ndarray, proba: bool) -> Iterator[list]:
    """The output rows of the raw inputs ``x``, in the order of ``output_columns``."""
    pred, prob = predict_chunk(loaded, x, proba)
    if not loaded.classifier:
        for row in np.asarray(pred, dtype=np.float64).reshape(len(x), -1):
            yield [float(v) for v in row]
        return
    names = class_names(loaded)
    for i, c in enumerate(np.asarray(pred).reshape(len(x))):
        label: Any = names[int(c)] if names is not None and 0 <= c < len(names) else int(c)
        yield [label] + ([float(p) for p in prob[i]] if proba else [])
