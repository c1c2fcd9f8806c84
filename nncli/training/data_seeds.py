"""The data's random streams: a split or an epoch's order is a pure function of the seed.

Every stream is a ``SeedSequence(seed)`` child with a fixed spawn key per purpose (generate, split,
shuffle + epoch), so that adding a stream for one purpose never changes the numbers of another.
"""

from __future__ import annotations

import numpy as np

# spawn keys: (_DATA, purpose[, epoch]) — far from the small keys SeedSequence.spawn() hands out
_DATA, GENERATE, SPLIT, SHUFFLE = 0x6E6E636C, 0, 1, 2


def seeded_rng(seed: int, *purpose: int) -> np.random.Generator:
    """The stream of ``seed`` for one purpose (``GENERATE``, ``SPLIT``, or ``SHUFFLE`` and an epoch)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_DATA, *purpose)))


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the n training examples in ``epoch``: a pure function of (seed, epoch)."""
    return seeded_rng(seed, SHUFFLE, epoch).permutation(n)
