"""Area under the ROC curve: binary, and one-vs-rest macro for several classes.

The binary AUC is the probability that a random positive scores above a random negative, ties
counting one half — the Mann–Whitney U statistic over the two group sizes:

    AUC = (Σ_{n positive} rank(s_n) − n₁(n₁ + 1)/2) / (n₁ n₀)

with ranks 1..N of the scores, tied scores sharing their average rank. This equals the trapezoidal
area under the ROC curve that scikit-learn's ``roc_auc_score`` computes.
"""

from __future__ import annotations

import math

import numpy as np


def average_ranks(s: np.ndarray) -> np.ndarray:
    """Ranks 1..N of the scores ``s`` (N,), tied scores sharing the mean of their ranks."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each distinct value's last copy
    return ((last - counts + 1 + last) / 2.0)[inverse.reshape(-1)]


def binary_roc_auc(positive: np.ndarray, s: np.ndarray) -> float:
    """AUC of scores ``s`` (N,) for the boolean labels ``positive`` (N,).

    NaN — undefined, as scikit-learn says — when only one of the two groups is present, or when a
    score is NaN or infinite (a diverged model).
    """
    positive = np.asarray(positive, dtype=bool)
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    n1 = int(np.count_nonzero(positive))
    n0 = len(s) - n1
    if n1 == 0 or n0 == 0 or not np.all(np.isfinite(s)):
        return math.nan
    u = average_ranks(s)[positive].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def ovr_roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """One-vs-rest macro AUC: the mean over classes c of the binary AUC of ``proba[:, c]`` for
    ``y == c``. ``proba`` (N, C) are class probabilities (a softmax), ``y`` (N,) labels in [0, C).

    NaN when a class has no example (or every example): its AUC is undefined, so the mean is too,
    as in scikit-learn's ``roc_auc_score(..., multi_class="ovr", labels=range(C))``.
    """
    return float(np.mean([binary_roc_auc(y == c, proba[:, c]) for c in range(proba.shape[1])]))
