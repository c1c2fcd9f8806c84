"""Small real datasets shipped with nncli, so that the examples train with no network.

See README.md in this folder for their sources and licences.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

#: built-in name → archive file in this package
PACKAGED = {"mnist1d": "mnist1d.npz", "digits": "digits.npz"}


def load_packaged(name: str) -> dict[str, np.ndarray]:
    """Every array of the packaged archive ``name`` (plain arrays; pickles are never loaded)."""
    ref = resources.files(__name__).joinpath(PACKAGED[name])
    with ref.open("rb") as fh, np.load(fh, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}
