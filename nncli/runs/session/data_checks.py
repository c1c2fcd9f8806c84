"""A run's data against its model and against itself: each split checked to fit the model, and the
fingerprint of the training arrays, which a resumed run must match."""

from __future__ import annotations

import hashlib

import numpy as np

from nncli.core.errors import DataError


def fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_split(split, name: str, chain) -> None:
    """DataError unless ``split`` fits the model: per-example input shape and targets for the loss."""
    if len(split.x) == 0:
        return
    want = tuple(chain.input_shape)
    if tuple(split.x.shape[1:]) != want:
        raise DataError(
            f"{name} inputs have shape {tuple(split.x.shape[1:])} per example, but "
            f"model.input_shape is {list(want)}",
            field="model.input_shape",
        )
    if len(split.y) != len(split.x):
        raise DataError(f"{name} split has {len(split.x)} inputs but {len(split.y)} targets")
    try:
        chain.loss.check_targets(np.asarray(split.y), chain.output_shape())
    except DataError as exc:
        raise DataError(f"{name} split: {exc.message}", field="data") from None
