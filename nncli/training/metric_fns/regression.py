"""Regression metrics of outputs h and targets y, both (N, D) (D outputs per example).

MAE, MSE and RMSE are means over all N·D entries (RMSE = √MSE, as Keras and torchmetrics compute it;
for D = 1 also scikit-learn's). R² is the mean over the D outputs of 1 − SS_res / SS_tot, scikit-learn's
``r2_score`` with its default ``multioutput="uniform_average"``.
"""

from __future__ import annotations

import math

import numpy as np


def _diff(h: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.asarray(h, dtype=np.float64) - np.asarray(y, dtype=np.float64).reshape(np.shape(h))


def mae(h: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error (1/(N·D)) Σ |h − y|; NaN for no examples."""
    d = _diff(h, y)
    return float(np.mean(np.abs(d))) if d.size else math.nan


def mse(h: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error (1/(N·D)) Σ (h − y)², PyTorch's ``MSELoss``; NaN for no examples."""
    d = _diff(h, y)
    return float(np.mean(d * d)) if d.size else math.nan


def rmse(h: np.ndarray, y: np.ndarray) -> float:
    """√MSE, in the targets' units."""
    m = mse(h, y)
    return math.sqrt(m) if math.isfinite(m) else m


def r2(h: np.ndarray, y: np.ndarray) -> float:
    """Coefficient of determination, averaged over outputs: R² = 1 − Σ(y − h)² / Σ(y − ȳ)² per column.

    NaN when a target column is constant (or N < 2): R² is undefined there. scikit-learn's default
    (``force_finite=True``) reports such a column as 1.0 or 0.0 instead.
    """
    h = np.asarray(h, dtype=np.float64)
    if len(h) < 2:
        return math.nan
    h = h.reshape(len(h), -1)
    y = np.asarray(y, dtype=np.float64).reshape(h.shape)
    ss_res = np.sum((y - h) ** 2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    if np.any(ss_tot == 0):
        return math.nan
    return float(np.mean(1.0 - ss_res / ss_tot))
