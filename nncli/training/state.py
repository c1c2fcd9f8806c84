"""A chain's training state as flat named arrays: weights, optimiser slots and RNG states.

These are the pieces a checkpoint stores (``nncli.runs.checkpoint`` writes and verifies the files);
the training loop uses them to save and restore itself without knowing about files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import CheckpointError


def group(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under ``<prefix>/``, with the prefix removed."""
    p = f"{prefix}/"
    return {k[len(p) :]: v for k, v in arrays.items() if k.startswith(p)}


def grouped(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def rng_states(chain) -> dict[str, dict[str, Any]]:
    """Bit-generator states of every ``numpy.random.Generator`` a module holds (dropout masks)."""
    out: dict[str, dict[str, Any]] = {}
    for name, m in chain.named_modules():
        for attr, v in vars(m).items():
            if isinstance(v, np.random.Generator):
                out.setdefault(name, {})[attr] = v.bit_generator.state
    return out


def set_rng_states(chain, states: dict[str, dict[str, Any]], where: Path | str) -> None:
    mods = dict(chain.named_modules())
    for name, attrs in states.items():
        for attr, st in attrs.items():
            gen = getattr(mods.get(name), attr, None)
            if not isinstance(gen, np.random.Generator):
                raise CheckpointError(
                    f"{where}: checkpoint has a random state for module {name}.{attr}, "
                    f"which this model does not have"
                )
            gen.bit_generator.state = st


def apply_weights(chain, weights: dict[str, np.ndarray], where: Path | str) -> None:
    """Copy ``weights`` into ``chain``'s parameters and buffers (names and shapes must match exactly),
    cast to their dtypes."""
    own = chain.state_arrays()
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise CheckpointError(
            f"{where}: checkpoint does not match the model's architecture ({'; '.join(parts)})"
        )
    for k, p in own.items():
        if weights[k].shape != p.shape:
            raise CheckpointError(
                f"{where}: checkpoint does not match the model's architecture "
                f"({k}: model has shape {p.shape}, checkpoint {weights[k].shape})"
            )
    for k, p in own.items():
        p[...] = weights[k]
