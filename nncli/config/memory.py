"""Memory estimates that let a command refuse a batch that cannot fit, before allocating it."""

from __future__ import annotations

import os

import numpy as np

from nncli.core.errors import ConfigError, ShapeError

#: copies of a data set alive at once while it is read, checked, split, standardised and cast
DATA_COPIES = 4


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
    return activation_bytes(chain.input_shape, chain.modules, batch, dtype)


def activation_bytes(input_shape, modules, batch: int, dtype) -> int:
    """:func:`batch_bytes` from shapes alone: ``modules`` need not be built (only ``output_shape``
    is asked), so a config can be checked before any parameter is allocated."""
    itemsize = np.dtype(dtype).itemsize
    shape = tuple(input_shape)
    sizes = [_count(shape)]
    for m in modules:
        shape = m.output_shape(shape)
        sizes.append(_count(shape))
    return (sum(sizes) + max(sizes)) * batch * itemsize


def batch_error(need: int, batch: int, dtype, *, what: str = "a batch", field: str | None = None):
    """The ShapeError (unplaced, at ``field``) when ``need`` bytes for ``batch`` examples are more
    than this process can have; None when they fit."""
    have = available_bytes()
    if have is None or need <= 0.8 * have:
        return None
    return ShapeError(
        f"{what} of {batch} examples needs about {need / 2**30:,.1f} GiB in "
        f"{np.dtype(dtype).name} for its activations, more than the "
        f"{have / 2**30:,.1f} GiB available; use fewer examples or smaller layers",
        field=field,
    )


def check_batch_fits(
    loaded, chain, batch: int, dtype, *, what: str = "a batch", field: str | None = None
) -> None:
    """ShapeError (placed at ``field`` of the config ``loaded``) when ``batch`` examples would need
    more memory than this process can have."""
    exc = batch_error(batch_bytes(chain, batch, dtype), batch, dtype, what=what, field=field)
    if exc is not None:
        raise loaded.locate(exc)


def check_fits(need: int, what: str, *, field: str | None = None, error=ConfigError) -> None:
    """``error`` (a UserError class; ``field`` the config field to blame) when ``need`` bytes are more
    than this process can have. ``what`` starts the message: ``'1,000,000,000,000 synthetic examples'``."""
    have = available_bytes()
    if have is not None and need > 0.8 * have:
        raise error(
            f"{what} need about {_gib(need)} of memory, more than the {_gib(0.8 * have)} this "
            f"process may use ({_gib(have)} available)",
            field=field,
        )


def check_data_fits(values: int, what: str, *, field: str | None = None, error=ConfigError) -> None:
    """``check_fits`` for a data set of ``values`` numbers, held as float64 about DATA_COPIES times."""
    check_fits(values * 8 * DATA_COPIES, what, field=field, error=error)


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB" if n < 10 * 2**30 else f"{n / 2**30:,.0f} GiB"


def _count(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)  # Python ints: no overflow for absurd sizes
    return n
