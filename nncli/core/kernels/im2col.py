"""Shared N-d machinery for Conv1D, Conv2D and pooling: sizes, padding, im2col and col2im.

Everything is written once for d spatial axes (d = 1: (N, C, L); d = 2: (N, C, H, W)), as PyTorch's
``_ConvNd`` is. A convolution (notes eqs. 7.48, 7.50, 7.51) is one matrix product once the input windows
are laid out as columns:

    cols[(c, κ), (n, p)] = z_pad[n, c, p·s + κ·δ]           (C·K, N·P),  K = Πk, P = Π out
    u[o, (n, p)]         = Σ_{c,κ} W[o, (c, κ)] · cols[(c, κ), (n, p)]

``cols`` is gathered by a strided *view* of the padded input and one reshape-copy; its layout
(C·K rows, N·P columns) makes the forward product, ∂J/∂W = v cols^T and ∂J/∂cols = W^T v each ONE
large GEMM. col2im (the adjoint of im2col) adds K strided slices into the padded gradient — a loop over
kernel offsets only, never over examples or output positions. At stride 1 the columns can also be
laid out on the padded-width grid (``im2col_grid``): each kernel offset's row is then one contiguous
slice of the padded plane, and the product's extra columns are dropped through ``grid_view``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product

import numpy as np
from numpy.lib.stride_tricks import as_strided

from nncli.core.errors import ShapeError
from nncli.core.kernels.workspace import Workspace

AXES = ("L",), ("H", "W")  # names of the spatial axes for d = 1, 2 (error messages)


def as_tuple(value, nd: int, what: str) -> tuple[int, ...]:
    """An int or a length-``nd`` sequence as an ``nd``-tuple of ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * nd
    t = tuple(int(x) for x in value)
    if len(t) != nd:
        raise ValueError(f"{what} must be an int or a list of {nd} ints, got {list(value)}")
    return t


@dataclass(frozen=True)
class Geometry:
    """Kernel, stride, dilation and per-side zero padding along each of the d spatial axes."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pad_hi: tuple[int, ...]

    @property
    def nd(self) -> int:
        return len(self.kernel)

    @property
    def K(self) -> int:
        """Number of taps in one window, Π k."""
        return math.prod(self.kernel)  # not np.prod: asked several times per layer and step

    def out_size(self, spatial: tuple[int, ...], owner: str) -> tuple[int, ...]:
        """L' = ⌊(L + p_lo + p_hi − δ(k−1) − 1)/s⌋ + 1 per axis; ShapeError when any L' < 1."""
        out = []
        for ax, (L, k, s, d, lo, hi) in enumerate(
            zip(spatial, self.kernel, self.stride, self.dilation, self.pad_lo, self.pad_hi)
        ):
            span = d * (k - 1) + 1
            n = (L + lo + hi - span) // s + 1
            if L + lo + hi < span:
                name = AXES[self.nd - 1][ax] if self.nd <= 2 else f"axis {ax}"
                dil = f" (dilation {d})" if d != 1 else ""
                raise ShapeError(
                    f"{owner}: input too small: {name} = {L} plus padding {lo}+{hi} = {L + lo + hi} "
                    f"is shorter than the kernel's span {span} (kernel {k}{dil}); "
                    f"output size would be {n}"
                )
            out.append(n)
        return tuple(out)

    def padded(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(L + lo + hi for L, lo, hi in zip(spatial, self.pad_lo, self.pad_hi))

    def interior(self, spatial: tuple[int, ...]) -> tuple[slice, ...]:
        """Slices of the padded spatial axes that hold the unpadded input."""
        return tuple(slice(lo, lo + L) for L, lo in zip(spatial, self.pad_lo))

    def offsets(self, out: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
        """(κ, slices): for each kernel offset κ, the padded-input positions p·s + κ·δ, p < out."""
        for kappa in product(*(range(k) for k in self.kernel)):
            yield (
                kappa,
                tuple(
                    slice(i * d, i * d + s * (o - 1) + 1, s)
                    for i, d, s, o in zip(kappa, self.dilation, self.stride, out)
                ),
            )


def pad_buffer(ws: Workspace, z: np.ndarray, geom: Geometry, fill: float = 0.0) -> np.ndarray:
    """The padded buffer for ``z`` from ``ws``, its border set to ``fill`` (0 for convolution and
    average pooling, −inf for max pooling, as PyTorch pads) but its interior NOT yet written: fill
    it with ``fill_rows``, e.g. block by block on several threads. ``z`` itself when unpadded.

    The border is written only when the shape changes (``Workspace.get(fill=...)``), since each call
    rewrites the interior alone.
    """
    if not any(geom.pad_lo) and not any(geom.pad_hi):
        return z  # nothing to pad: read the input itself (never written to)
    return ws.get("padded", z.shape[:2] + geom.padded(z.shape[2:]), z.dtype, fill=fill)


def fill_rows(buf: np.ndarray, z: np.ndarray, geom: Geometry, n0: int, n1: int) -> None:
    """Copy examples n0..n1 of ``z`` into the interior of ``buf`` (from ``pad_buffer``)."""
    if buf is not z:
        buf[(slice(n0, n1), slice(None)) + geom.interior(z.shape[2:])] = z[n0:n1]


def pad(ws: Workspace, z: np.ndarray, geom: Geometry, fill: float = 0.0) -> np.ndarray:
    """``z`` padded with ``fill`` on every spatial axis, in ``ws``'s buffer (``z`` when unpadded)."""
    buf = pad_buffer(ws, z, geom, fill)
    fill_rows(buf, z, geom, 0, z.shape[0])
    return buf


def windows(zp: np.ndarray, geom: Geometry, out: tuple[int, ...]) -> np.ndarray:
    """Read-only view (N, C, *kernel, *out) with view[n, c, κ, p] = zp[n, c, p·s + κ·δ]; no copy."""
    st = zp.strides
    sp = st[2:]
    strides = (
        st[:2]
        + tuple(x * d for x, d in zip(sp, geom.dilation))
        + tuple(x * s for x, s in zip(sp, geom.stride))
    )
    return as_strided(zp, zp.shape[:2] + geom.kernel + out, strides, writeable=False)


def im2col(
    zp: np.ndarray, geom: Geometry, out: tuple[int, ...], into: np.ndarray | None = None
) -> np.ndarray:
    """cols (C·K, N·P) from the padded input (N, C, *padded): one strided gather, one copy.

    ``into``: an optional (C·K, N·P) array to write into (reused across calls); rows may be strided.
    """
    nd = geom.nd
    w = windows(zp, geom, out)  # (N, C, *k, *out)
    order = (1, *range(2, 2 + nd), 0, *range(2 + nd, 2 + 2 * nd))  # (C, *k, N, *out)
    N, C = zp.shape[:2]
    shape = (C * geom.K, N * math.prod(out))
    if into is None:
        return w.transpose(order).reshape(shape)
    # ``into`` may be a column block of a larger matrix; splitting its axes is still a view
    target = into.reshape(w.transpose(order).shape)
    np.copyto(target, w.transpose(order))
    return into


def im2col_examples(zp: np.ndarray, geom: Geometry, out: tuple[int, ...], into: np.ndarray) -> np.ndarray:
    """The columns of each example apart: ``into`` (n, C·K, P) ← cols[n][(c, κ), p] = zp[n, c, p·s + κ·δ].

    One strided copy. ``into`` may be a row range of a larger buffer (e.g. (n, C·K + 1, P) with a row
    of ones below for the bias); its rows are split into (C, *k) and its columns into ``out`` as views.
    """
    w = windows(zp, geom, out)  # (n, C, *k, *out)
    target = into.view()
    target.shape = w.shape  # raises rather than copies if the split were not a view
    np.copyto(target, w)
    return into


def col2im_examples(dcols: np.ndarray, geom: Geometry, dzp: np.ndarray, out: tuple[int, ...]) -> np.ndarray:
    """Adjoint of ``im2col_examples``: ADD dcols (n, C·K, P) into dzp (n, C, *padded)."""
    n, C = dzp.shape[:2]
    d = dcols.reshape((n, C) + geom.kernel + out)
    for kappa, sl in geom.offsets(out):
        dzp[(slice(None), slice(None)) + sl] += d[(slice(None), slice(None)) + kappa]
    return dzp


def col2im(dcols: np.ndarray, geom: Geometry, dzp: np.ndarray, out: tuple[int, ...]) -> np.ndarray:
    """Adjoint of im2col: ADD dcols (C·K, n·P) into dzp (n, C, *padded), summing overlapping taps."""
    n, C = dzp.shape[:2]
    d6 = dcols.reshape((C,) + geom.kernel + (n,) + out)
    target = dzp.swapaxes(0, 1)  # (C, n, *padded) view
    for kappa, sl in geom.offsets(out):
        target[(slice(None), slice(None)) + sl] += d6[(slice(None),) + kappa]
    return dzp


def grid_positions(zp_spatial: tuple[int, ...], out: tuple[int, ...]) -> int:
    """Columns per example on the padded-width grid (``im2col_grid``): (H' − 1)·W_pad + W'."""
    return (out[0] - 1) * zp_spatial[1] + out[1]


def grid_fits(zp: np.ndarray, geom: Geometry) -> bool:
    """Whether ``im2col_grid`` applies: Conv2D, stride 1, each channel's plane contiguous."""
    if geom.nd != 2 or any(s != 1 for s in geom.stride):
        return False
    item = zp.itemsize
    return zp.strides[3] == item and zp.strides[2] == zp.shape[3] * item


def im2col_grid(zp: np.ndarray, geom: Geometry, out: tuple[int, ...], into: np.ndarray) -> np.ndarray:
    """The columns of each example on the padded-width grid: ``into`` (n, C·K, P_g) ←
    cols[n][(c, κ), q] = zp_flat[n, c, q + κ_h·δ_h·W_pad + κ_w·δ_w], q < P_g = (H' − 1)·W_pad + W'.

    At stride 1 the output position (y, x) is the grid column q = y·W_pad + x, and each kernel
    offset's row is ONE contiguous slice of the channel's padded plane: the copy moves rows of P_g
    floats, where ``im2col_examples`` moves rows of W' (8–32 floats for image-sized layers). The
    columns q with x ≥ W' read across a row's end; their products are dropped (``grid_view``).
    Needs ``grid_fits(zp, geom)``.
    """
    n, C = zp.shape[:2]
    st = zp.strides
    Pg = grid_positions(zp.shape[2:], out)
    shape = (n, C) + geom.kernel + (Pg,)
    dh, dw = geom.dilation
    w = as_strided(zp, shape, (st[0], st[1], st[2] * dh, st[3] * dw, st[3]), writeable=False)
    target = into.view()
    target.shape = shape  # raises rather than copies if the split were not a view
    np.copyto(target, w)
    return into


def grid_view(a: np.ndarray, width: int, out: tuple[int, ...]) -> np.ndarray:
    """The (n, C, H', W') positions of grid rows ``a`` (n, C, P_g) whose rows are ``width`` apart."""
    st = a.strides
    return as_strided(a, a.shape[:2] + out, (st[0], st[1], st[2] * width, st[2]), writeable=True)


def onto_grid(a: np.ndarray, width: int, into: np.ndarray) -> np.ndarray:
    """``a`` (n, C, H', W') written onto grid rows ``into`` (n, C, P_g) ``width`` apart, with zeros in
    the columns between (x ≥ W'), so that a product over the grid's columns sees only ``a``."""
    out = a.shape[2:]
    np.copyto(grid_view(into, width, out), a)
    gap = width - out[1]
    if gap and out[0] > 1:
        st = into.strides
        shape = into.shape[:2] + (out[0] - 1, gap)
        as_strided(into[:, :, out[1] :], shape, (st[0], st[1], st[2] * width, st[2]), writeable=True).fill(0)
    return into
