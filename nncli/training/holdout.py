"""Holding examples out of the training split: how many, and which (stratified by class)."""

from __future__ import annotations

import numpy as np

from nncli.core.errors import DataError


def hold_out(n_out: int, labels: np.ndarray | None, idx: np.ndarray, rng: np.random.Generator):
    """Split positions ``idx`` into (kept, held out) with ``n_out`` held out, both sorted.

    With ``labels`` (one per position) each class gives its exact share
    n_c · n_out / N floored, the few left over going to the largest remainders.
    """
    if labels is None:
        perm = rng.permutation(idx)
        out = perm[:n_out]
    else:
        classes, inv = np.unique(labels, return_inverse=True)
        counts = np.bincount(inv, minlength=len(classes))
        exact = counts * n_out / len(idx)
        take = np.floor(exact).astype(np.int64)
        extra = np.argsort(-(exact - take), kind="stable")[: n_out - int(take.sum())]
        take[extra] += 1
        out = np.concatenate([rng.permutation(idx[inv == c])[:k] for c, k in enumerate(take)])
    out = np.sort(out)
    return np.setdiff1d(idx, out, assume_unique=True), out


def holdout_size(frac: float, n: int, what: str, where: str) -> int:
    """How many of ``n`` examples a fraction ``frac`` holds out (rounded); DataError when it leaves none
    for training (``what``: the setting, e.g. ``test_split``)."""
    k = int(round(frac * n))
    if k >= n:
        raise DataError(f"{where}: {what} of {frac:g} of {n} examples leaves none for training")
    return k
