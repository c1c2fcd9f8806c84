"""One workspace for the kernels' scratch buffers.

Fresh multi-megabyte arrays cost page faults on first touch (on these workloads about as much as the
arithmetic), so the kernels take their temporaries from a ``Workspace`` instead of allocating them
on every call. A buffer is found by ``(name, slot, dtype)`` and handed out as a C-contiguous view of
the requested shape; it grows to the largest request seen under its key and is then reused, so the
memory is bounded by the largest layer per name, never by the number of calls or of layers.

Two instances serve everything:

- ``SHARED`` (this module) holds temporaries that never outlive one forward or backward call
  (the convolution's columns, LN's per-thread rows): every layer shares them.
- a layer that keeps a buffer from forward to backward (the padded input of a convolution or a
  pooling) owns a ``Workspace`` of its own, freed with the layer.

Threads: a buffer is used by one thread at a time; block functions running at once on several
threads pass their ``slot`` (``run_blocks`` gives each thread one), so each thread has its own.
Whole passes running at once on several threads (the halves of a split batch, ``core.batch_split``)
each start their slots at their own ``slot_base`` (a per-thread offset set by ``slots_from``), so
that their kernels, which then run on one thread and ask for slot 0, never share a buffer.
A buffer requested with ``fill`` is set to that value whenever its shape, dtype or fill changes (and
when it is first made); callers then rewrite only part of it on each call — the interior of a padded
copy, whose border keeps the fill. Values are otherwise uninitialised.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

Key = tuple[str, int, np.dtype]

_local = threading.local()
#: whether any thread was ever given a first slot (until then ``get`` skips the per-thread lookup,
#: ~0.3 µs on each of a small model's calls)
_offsets_used = False


def slot_base() -> int:
    """The first slot of the calling thread (0 unless ``slots_from`` set one)."""
    return getattr(_local, "base", 0)


@contextmanager
def slots_from(base: int) -> Iterator[None]:
    """Within the block, this thread's slot k is ``base + k`` in every workspace."""
    global _offsets_used
    _offsets_used = _offsets_used or base != 0
    before = slot_base()
    _local.base = base
    try:
        yield
    finally:
        _local.base = before


class Workspace:
    """Reusable buffers by name, slot and dtype; see the module docstring."""

    def __init__(self) -> None:
        self._bufs: dict[Key, np.ndarray] = {}
        self._filled: dict[Key, tuple] = {}  # (shape, fill) last handed out with a ``fill``

    def get(
        self, name: str, shape: tuple[int, ...], dtype, slot: int = 0, fill: float | None = None
    ) -> np.ndarray:
        """A C-contiguous ``shape`` array of ``dtype`` for ``name`` and thread ``slot``."""
        dtype = np.dtype(dtype)
        shape = tuple(map(int, shape))
        key = (name, slot + getattr(_local, "base", 0) if _offsets_used else slot, dtype)
        n = math.prod(shape)  # not np.prod: this runs several times per layer and step
        buf = self._bufs.get(key)
        fresh = buf is None or buf.size < n
        if buf is None or fresh:
            buf = self._bufs[key] = np.empty(n, dtype=dtype)
        view = buf[:n].reshape(shape)
        if fill is not None and (fresh or self._filled.get(key) != (shape, fill)):
            view.fill(fill)
            self._filled[key] = (shape, fill)
        return view

    def __deepcopy__(self, memo) -> Workspace:
        # scratch, not state: a copied layer (a split batch's second half) makes its own buffers
        return Workspace()

    @property
    def nbytes(self) -> int:
        """Bytes held by all the buffers."""
        return sum(b.nbytes for b in self._bufs.values())

    def clear(self) -> None:
        """Drop every buffer (the next requests allocate afresh)."""
        self._bufs.clear()
        self._filled.clear()


#: temporaries that live within one forward or backward call, shared by every layer
SHARED = Workspace()
