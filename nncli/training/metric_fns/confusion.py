"""The confusion matrix of a classifier."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """M (C, C) of int64 counts: M[i, j] = #examples of true class i predicted as class j.

    Rows are the true classes, columns the predictions (scikit-learn's ``confusion_matrix`` with
    ``labels=range(C)``); a class never seen or never predicted keeps its row or column of zeros.
    ``y`` and ``pred`` (N,) hold labels in [0, C).
    """
    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    return np.bincount(y * classes + pred, minlength=classes * classes).reshape(classes, classes)
