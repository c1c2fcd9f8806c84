"""Input columns that are views of one float64 block (N, k), as the readers return them: recognised, so
that encoding needs no copy, and kept together when rows are selected."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def block_of(values: Sequence[np.ndarray]) -> np.ndarray | None:
    """The float64 (N, k) array whose columns ``values`` are, in order, when they are exactly that
    (the reader's block): then the inputs need no copy. Else None."""
    if not len(values):
        return None
    base = values[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 2 or base.dtype != np.float64:
        return None
    if base.shape[1] != len(values) or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    for k, v in enumerate(values):
        if v.base is not base or v.shape != (len(base),) or v.strides != (base.strides[0],):
            return None
        if v.__array_interface__["data"][0] != start + k * base.itemsize:
            return None
    return base


def take(values: Sequence[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    """``[v[rows] for v in values]``, as columns of one new block when ``values`` share one."""
    base = block_of(values)
    if base is None:
        return [v[rows] for v in values]
    sub = base[rows]
    return [sub[:, k] for k in range(sub.shape[1])]
