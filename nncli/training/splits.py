"""A loaded dataset's parts (train, validation, test) and the minibatches of a part."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    x: np.ndarray  # (N, *input_shape) float64
    y: np.ndarray  # (N,) int64 labels, or (N, *out) float64 targets

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Dataset:
    train: Split
    val: Split | None
    test: Split | None
    info: dict = field(default_factory=dict)  # JSON-able: source, sizes, split, standardisation


def batches(
    split: Split, batch_size: int, order: np.ndarray | None = None, start: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Minibatches (x (B, ...), y (B, ...)) in ``order`` (None: as stored), from batch index ``start``.

    The last batch is smaller when batch_size does not divide N (nothing is dropped).
    """
    n = len(split.x)
    for b in range(start, -(-n // batch_size)):
        lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
        if order is None:
            yield split.x[lo:hi], split.y[lo:hi]
        else:
            idx = order[lo:hi]
            yield split.x[idx], split.y[idx]
