"""Seeded synthetic datasets: ``spirals`` (classification) and ``regression1d`` (curve fitting).

Both are pure functions of their arguments and the generator, so the same seed gives the same data.
"""

from __future__ import annotations

import numpy as np


def spirals(
    n_samples: int, classes: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved spiral arms in the plane: x (N, 2) float64, y (N,) int64 arm index.

    Arm k holds N/K points (the first N mod K arms one more) at radii r evenly spaced in [0.05, 1] and
    angles θ = 2πk/K + 3πr (one and a half turns); Gaussian noise of std ``noise`` is added to both
    coordinates, so ``noise`` is in units of the outer radius.
    """
    counts = np.full(classes, n_samples // classes)
    counts[: n_samples % classes] += 1
    xs, ys = [], []
    for k, n in enumerate(counts):
        r = np.linspace(0.05, 1.0, n)
        theta = 2 * np.pi * k / classes + 3 * np.pi * r  # one and a half turns per arm
        pts = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
        xs.append(pts + noise * rng.standard_normal(pts.shape))
        ys.append(np.full(n, k, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def regression1d(n_samples: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """y = sin(x) + 0.3·x + ε, x ~ U(−π, π), ε ~ N(0, noise²): x (N, 1), y (N, 1), both float64.

    The linear term keeps the curve from being symmetric, so a fit that only learns |x| shows.
    """
    x = rng.uniform(-np.pi, np.pi, size=(n_samples, 1))
    y = np.sin(x) + 0.3 * x + noise * rng.standard_normal((n_samples, 1))
    return x, y
