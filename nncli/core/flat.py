"""One contiguous buffer per dtype for a model's parameters, and one for their gradients.

A small model's training step costs numpy calls, not arithmetic (the MNIST-1D CNN's ~19 MFLOP take
0.2 ms at one core's peak): an optimiser that updates each parameter tensor on its own, a gradient
norm and a finiteness check that visit each one, cost a dozen calls per tensor. Laid out flat, the
whole model is one array per dtype, and each of those is a handful of calls.

``flatten(root)`` moves every parameter of a module tree (in ``root.parameters()`` order) into one
1-D buffer per dtype and every gradient into a second one, and rebinds each module's ``params[key]``
and ``grads[key]`` to views of them: modules keep their per-layer API (``params["weight"]`` is still
an array of the weight's shape, written in place), checkpoints keep their names and shapes.

Each view starts on a 64-byte boundary (a cache line, and the alignment SIMD loops and BLAS prefer).
The few elements between two views are zeros in both buffers and stay zeros under every update rule
of ``nncli.training.optimizers`` (a zero gradient on a zero parameter moves nothing, with or
without weight decay), so whole-buffer reductions (norms, sums) see only the parameters' values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nncli.core.module import Module

#: bytes each view's start is aligned to
ALIGN = 64


def aligned_zeros(n: int, dtype) -> np.ndarray:
    """A zeroed 1-D array of ``n`` elements whose first element sits on an ``ALIGN``-byte boundary."""
    dtype = np.dtype(dtype)
    pad = max(1, ALIGN // dtype.itemsize)
    raw = np.zeros(n + pad, dtype)
    skip = (-raw.ctypes.data % ALIGN) // dtype.itemsize
    return raw[skip : skip + n]


@dataclass
class Segment:
    """One dtype's flat buffers and where each parameter lives in them.

    ``spans[j] = (i, start, stop, shape)``: parameter ``i`` (its index in the parameter list) is
    ``params[start:stop].reshape(shape)``, its gradient the same span of ``grads``.
    """

    params: np.ndarray
    grads: np.ndarray
    spans: list[tuple[int, int, int, tuple[int, ...]]] = field(default_factory=list)

    @property
    def dtype(self) -> np.dtype:
        return self.params.dtype

    def zeros_like(self) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
        """A zeroed buffer laid out as ``params`` (an optimiser slot: momentum, Adam's m or v) and
        ``(parameter index, view)`` for each parameter, shaped like it."""
        buf = aligned_zeros(self.params.size, self.dtype)
        return buf, [(i, buf[lo:hi].reshape(shape)) for i, lo, hi, shape in self.spans]


def per_array_segments(params: list[np.ndarray], grads: list[np.ndarray]) -> list[Segment]:
    """The layout of parameters that share no buffer: one segment per parameter (their own memory)."""
    return [
        Segment(p.reshape(-1), g.reshape(-1), [(i, 0, p.size, p.shape)])
        for i, (p, g) in enumerate(zip(params, grads))
    ]


class FlatParameters:
    """The flat layout of a module tree's parameters (see the module docstring); ``segments`` has
    one ``Segment`` per dtype, in order of first appearance."""

    def __init__(self, root: Module):
        slots = _slots(root)
        by_dtype: dict[np.dtype, list[int]] = {}
        for j, (m, key) in enumerate(slots):
            by_dtype.setdefault(m.params[key].dtype, []).append(j)
        self.segments: list[Segment] = []
        # (module, "params" or "grads", key, view): what ``intact`` checks
        self._views: list[tuple[Module, str, str, np.ndarray]] = []
        for dtype, members in by_dtype.items():
            step = max(1, ALIGN // dtype.itemsize)
            spans, end = [], 0
            for j in members:
                m, key = slots[j]
                size = m.params[key].size
                spans.append((j, end, end + size, m.params[key].shape))
                end += -(-size // step) * step  # the next view starts on an aligned element
            seg = Segment(aligned_zeros(end, dtype), aligned_zeros(end, dtype), spans)
            for j, lo, hi, shape in spans:
                m, key = slots[j]
                for attr, buf in (("params", seg.params), ("grads", seg.grads)):
                    table = getattr(m, attr)
                    view = buf[lo:hi].reshape(shape)
                    view[...] = table[key]
                    table[key] = view
                    self._views.append((m, attr, key, view))
            self.segments.append(seg)
        #: the modules whose gradients live here, each once (told when they are zeroed)
        self._owners = list({id(m): m for m, _ in slots}.values())

    def zero_grads(self) -> None:
        """Zero every gradient: one fill per dtype; each owner's ``grads_zeroed`` says so."""
        for seg in self.segments:
            seg.grads.fill(0)
        for m in self._owners:
            m.grads_zeroed = True

    def grads_twin(self, twin: Module) -> list[np.ndarray]:
        """Zeroed gradient buffers laid out as this layout's (one per dtype), every module of ``twin``
        (a copy of the tree this layout was made for, its parameters in the same order) rebound to
        views of them as its ``grads``. A split batch's second half accumulates there
        (``nncli.core.batch_split``): adding each buffer into its segment adds every gradient."""
        slots = _slots(twin)
        buffers = []
        for seg in self.segments:
            buf = aligned_zeros(seg.grads.size, seg.dtype)
            for j, lo, hi, shape in seg.spans:
                m, key = slots[j]
                m.grads[key] = buf[lo:hi].reshape(shape)
            buffers.append(buf)
        return buffers

    def intact(self) -> bool:
        """Whether every module still holds the views made here (nothing rebuilt or rebound since)."""
        return all(getattr(m, attr).get(key) is view for m, attr, key, view in self._views)

    def covers(self, params: list[np.ndarray], grads: list[np.ndarray]) -> bool:
        """Whether ``params`` and ``grads`` are exactly this layout's views, in parameter order."""
        n = sum(len(seg.spans) for seg in self.segments)
        if len(params) != n or len(grads) != n or not self.intact():
            return False
        for seg in self.segments:
            for i, lo, _, shape in seg.spans:
                p, g = params[i], grads[i]
                if p.shape != shape or g.shape != shape:
                    return False
                if not (_is_span(p, seg.params, lo) and _is_span(g, seg.grads, lo)):
                    return False
        return True


def _is_span(a: np.ndarray, buf: np.ndarray, start: int) -> bool:
    """Whether ``a`` is the C-contiguous view of ``buf`` that begins at element ``start``."""
    return (
        a.flags.c_contiguous
        and a.dtype == buf.dtype
        and a.ctypes.data == buf.ctypes.data + start * buf.itemsize
    )


def owners(root: Module) -> Iterator[Module]:
    """``root`` and every module below it, in the order ``Module.parameters`` walks them."""
    yield root
    for _, m in root.named_modules():
        yield m


def _slots(root: Module) -> list[tuple[Module, str]]:
    """(module, parameter key) of every parameter below ``root``, in ``Module.parameters`` order."""
    return [(m, key) for m in owners(root) for key in m.params]
