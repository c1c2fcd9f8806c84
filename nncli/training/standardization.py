"""Standardisation with the training split's statistics: ``load_dataset`` computes the per-feature
mean and std (saved in run.json), ``apply_standardization`` applies a run's to new inputs."""

from __future__ import annotations

import numpy as np

from nncli.core.errors import DataError

#: features whose training std is below this are divided by 1, not by a tiny number that would
#: blow up the validation and test values of a feature that is constant in training
STD_FLOOR = 1e-8


def apply_standardization(x: np.ndarray, info: dict) -> np.ndarray:
    """x (N, *input_shape) standardised with a run's training statistics (``info`` of its Dataset)."""
    x = np.asarray(x, dtype=np.float64)
    stats = info.get("standardization")
    if not stats:
        return x
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    if x.shape[1:] != mean.shape:
        if x.ndim < 1 or int(np.prod(x.shape[1:])) != mean.size:
            raise DataError(
                f"inputs have shape {tuple(x.shape[1:])} per example, but the run was "
                f"trained on {tuple(mean.shape)}"
            )
        x = x.reshape((len(x), *mean.shape))
    return (x - mean) / std
