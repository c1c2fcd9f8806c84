"""Precision, recall and F1 from a confusion matrix M (rows: true class, columns: predicted).

Per class c: TP = M[c, c], predicted P_c = Σ_i M[i, c], actual A_c = Σ_j M[c, j];
precision = TP / P_c, recall = TP / A_c, F1 = 2 TP / (P_c + A_c) (the harmonic mean of the two).
A ratio with a zero denominator counts as 0, as in scikit-learn (``zero_division`` at its default).

Averages over the C classes: ``macro`` the plain mean, ``weighted`` the mean weighted by A_c,
``micro`` the ratio of the summed counts (for single-label classes all three equal the accuracy),
``binary`` class 1 alone (a two-class model's positive class).
"""

from __future__ import annotations

import numpy as np

AVERAGES = ("binary", "macro", "micro", "weighted")
KINDS = ("precision", "recall", "f1")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """{"precision", "recall", "f1", "support"}: (C,) arrays from the confusion matrix ``cm`` (C, C)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp, predicted, actual = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, actual),
        "f1": _ratio(2 * tp, predicted + actual),
        "support": actual,
    }


def averaged(cm: np.ndarray, kind: str, average: str) -> float:
    """``kind`` (precision, recall or f1) of confusion matrix ``cm`` under ``average`` (see AVERAGES)."""
    if kind not in KINDS or average not in AVERAGES:
        raise ValueError(f"unknown {kind}/{average}")
    if average == "micro":
        cm = np.asarray(cm, dtype=np.float64)
        total = cm.sum()
        return float(np.trace(cm) / total) if total else 0.0
    scores = per_class(cm)
    values = scores[kind]
    if average == "binary":
        return float(values[1])
    if average == "macro":
        return float(values.mean())
    support = scores["support"]
    return float(values @ support / support.sum()) if support.sum() else 0.0
