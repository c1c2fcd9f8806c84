"""Memory estimates that let a command refuse a batch that cannot fit, before allocating it."""

from __future__ import annotations

import os

import numpy as np

from nncli.core.errors import ShapeError


def available_bytes() -> int | None:
    """What this process may allocate: physical memory, capped by an address-space limit if one is set."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    return min(limits) if limits else None


def batch_bytes(chain, batch: int, dtype) -> int:
    """Upper estimate of a forward and backward pass over ``batch`` examples: the input, every
    module's output u[i] and a gradient of the largest one, each (batch, *shape) in ``dtype``."""
    itemsize = np.dtype(dtype).itemsize
    shape = tuple(chain.input_shape)
    sizes = [_count(shape)]
    for m in chain.modules:
        shape = m.output_shape(shape)
        sizes.append(_count(shape))
    return (sum(sizes) + max(sizes)) * batch * itemsize


def check_batch_fits(
    loaded, chain, batch: int, dtype, *, what: str = "a batch", field: str | None = None
) -> None:
    """ShapeError (placed at ``field`` of the config ``loaded``) when ``batch`` examples would need
    more memory than this process can have."""
    need, have = batch_bytes(chain, batch, dtype), available_bytes()
    if have is not None and need > 0.8 * have:
        raise loaded.locate(
            ShapeError(
                f"{what} of {batch} examples needs about {need / 2**30:,.1f} GiB in "
                f"{np.dtype(dtype).name} for its activations, more than the "
                f"{have / 2**30:,.1f} GiB available; use fewer examples or smaller layers",
                field=field,
            )
        )


def _count(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)  # Python ints: no overflow for absurd sizes
    return n
