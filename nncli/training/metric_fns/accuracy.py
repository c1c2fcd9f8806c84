"""Accuracy and top-k accuracy of class scores.

Ties between scores are broken toward the lower class index, as ``numpy.argmax`` breaks them, so
``top_k_accuracy(h, y, 1) == accuracy(h.argmax(1), y)`` always (scikit-learn's
``top_k_accuracy_score`` breaks ties toward the higher index; the two agree whenever scores differ).
"""

from __future__ import annotations

import math

import numpy as np


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of predicted labels ``pred`` (N,) equal to the true labels ``y`` (N,); NaN when N = 0."""
    return float(np.mean(pred == y)) if len(y) else math.nan


def top_k_accuracy(scores: np.ndarray, y: np.ndarray, k: int) -> float:
    """Fraction of examples whose true class is among the ``k`` highest of its ``scores`` (N, C).

    The rank of the true class c of an example is 1 + #{j : s_j > s_c} + #{j < c : s_j = s_c}; a hit
    is a rank ≤ k. NaN when N = 0.
    """
    if not len(y):
        return math.nan
    y = np.asarray(y, dtype=np.intp)
    true = scores[np.arange(len(y)), y][:, None]
    earlier = np.arange(scores.shape[1])[None, :] < y[:, None]
    ahead = np.count_nonzero(scores > true, axis=1) + np.count_nonzero((scores == true) & earlier, axis=1)
    return float(np.mean(ahead < k))
