"""Convolutions at stride 1 on the flat padded input: rows in kernel-offset order, so that im2col
(Conv1D) and col2im (Conv1D and Conv2D) are one copy or one add per kernel offset and example.

``im2col_examples`` lays an example's columns out as rows (c, κ) of P floats, and ``col2im_examples``
adds them back row by row (by rows of W' floats in 2-d): numpy runs one inner loop per row, ~0.1 µs
each besides its work. Conv1D 8→16, L 256, k 5, 32 examples: 224 µs for col2im, of which 5 × 35 µs
are the adds of 65 K floats each.

At stride 1, an output position p and a kernel offset κ read the input at p + s_κ in the example's
padded input read flat (s_κ = κδ in 1-d, κ_h δ_h W_pad + κ_w δ_w in 2-d, with p = y·W_pad + x on
the padded-width grid). So with rows ordered (κ, c) and each row as long as a channel's padded plane
(``plane``: Lp, or H_pad·W_pad), the C rows of one offset κ form ONE slice of the flat example:

    Conv1D:  cols[n][(κ, c), q] = zp_flat[n, c·Lp + q + κδ],   q < Lp            (n, K·C [+ 1], Lp)

and the products read the first P columns of each row only (a strided view; BLAS takes the row
stride). The columns q ≥ P hold the next channel's first floats and are never read.

Backward's ∂J/∂cols come in the same layout, written by the product into the first P (Conv1D) or
P_g (Conv2D, v on the grid with zeros between its rows) columns of rows whose remaining columns stay
zero; col2im is then, for each κ, one add of a whole example:

    dzp_flat[n, s_κ : s_κ + C·plane − s_max] += dcols_flat[n, κ, : C·plane − s_max]

where the zero columns land on other positions and change nothing. The first offset is a copy
instead of an add onto zeros (the same values; only a −0 may become +0). Each position receives its
K terms in the order of the kernel offsets, as in ``col2im_examples``.

The rows (κ, c) need W₂'s columns in the same order (``kernel_major``), and the Conv1D's ∂J/∂W
comes back in it (``from_kernel_major``). Measured (float32, 1 thread, 32 examples of Conv1D 8→16,
L 256, k 5): col2im 224 → 46 µs.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np

from nncli.core.kernels.im2col import Geometry
from nncli.core.kernels.workspace import SHARED


def line_fits(zp: np.ndarray, geom: Geometry) -> bool:
    """Whether Conv1D's columns can be laid out on the line: stride 1, each example's rows contiguous."""
    if geom.nd != 1 or geom.stride != (1,):
        return False
    item = zp.itemsize
    return (
        zp.strides[2] == item
        and zp.strides[1] == zp.shape[2] * item
        and zp.strides[0] == zp.shape[1] * zp.strides[1]
    )


def kernel_major(W: np.ndarray) -> np.ndarray:
    """W (C', C, *k) as (K·C, C'): rows in (κ, c) order, the flat layout's W₂ᵀ."""
    nd = W.ndim - 2
    return W.transpose(*range(2, 2 + nd), 1, 0).reshape(-1, W.shape[0])


def from_kernel_major(dW2: np.ndarray, C: int, kernel: tuple[int, ...]) -> np.ndarray:
    """∂J/∂W₂ as (K·C, C'), rows in (κ, c) order, back to W's shape (C', C, *k)."""
    nd = len(kernel)
    return dW2.reshape(*kernel, C, -1).transpose(nd + 1, nd, *range(nd))


def shifts(geom: Geometry, padded: tuple[int, ...]) -> list[int]:
    """s_κ for each kernel offset κ (in ``Geometry.offsets``' order): where the offset's window
    starts in a channel's padded plane read flat, at stride 1."""
    steps = [math.prod(padded[i + 1 :]) * d for i, d in enumerate(geom.dilation)]
    return [sum(k * s for k, s in zip(kappa, steps)) for kappa in product(*(range(k) for k in geom.kernel))]


def im2col_line(zp: np.ndarray, geom: Geometry, n0: int, n1: int, bias: bool, slot: int) -> np.ndarray:
    """Conv1D: the examples n0..n1 of the padded input (N, C, Lp) as columns (n, k·C [+ 1], P), a
    view of the first P columns of rows Lp long, the last row ones when ``bias``."""
    C, Lp = zp.shape[1:]
    k, delta = geom.kernel[0], geom.dilation[0]
    P = Lp - delta * (k - 1)
    n = n1 - n0
    cols = SHARED.get("conv.lcols", (n, k * C + bias, Lp), zp.dtype, slot)
    src = zp[n0:n1].reshape(n, C * Lp)
    for kappa in range(k):
        shift = kappa * delta
        # the last row's final ``shift`` columns lie past the example's end: left as they are, unread
        dest = cols[:, kappa * C : (kappa + 1) * C].reshape(n, C * Lp)
        np.copyto(dest[:, : C * Lp - shift], src[:, shift:])
    if bias:
        cols[:, k * C] = 1
    return cols[:, :, :P]


def flat_dcols(K: int, C: int, plane: int, used: int, n: int, n_max: int, dtype, slot: int) -> np.ndarray:
    """A (n, K·C, plane) buffer for ∂J/∂cols whose columns from ``used`` on are zero: write the
    product into its ``[..., :used]``. Keyed by ``plane − used`` so that no user of the same buffer
    writes those columns, and sized for ``n_max`` examples so that blocks of other sizes do not
    reset it."""
    return SHARED.get(f"conv.dflat{plane - used}", (n_max, K * C, plane), dtype, slot, fill=0.0)[:n]


def col2im_flat(dcols: np.ndarray, offsets: list[int], dzp: np.ndarray) -> np.ndarray:
    """Adjoint of the flat columns: dzp (n, C, *padded) ← the K slices of dcols (n, K·C, plane), one
    per entry of ``offsets`` (``shifts``), whose unwritten columns are zero. dzp's previous values
    are overwritten, not added to."""
    n, C = dzp.shape[:2]
    size = math.prod(dzp.shape[1:])
    span = size - max(offsets)
    flat = dzp.reshape(n, size)
    d = dcols.reshape(n, len(offsets), size)
    np.copyto(flat[:, :span], d[:, 0, :span])
    flat[:, span:] = 0
    for k, shift in enumerate(offsets[1:], start=1):
        flat[:, shift : shift + span] += d[:, k, :span]
    return dzp
