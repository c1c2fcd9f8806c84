"""Conv1D at stride 1 on the padded line: im2col as K copies and col2im as K adds of whole examples.

``im2col_examples`` lays an example's columns out as rows (c, κ) of P floats, and ``col2im_examples``
adds them back row by row: numpy runs one inner loop per row (n·C·K of them), and each costs ~0.1 µs
besides its work. Conv1D 8→16, L 256, k 5, 32 examples: 224 µs for col2im, of which 5 × 35 µs are
the adds of 65 K floats each.

Ordered (κ, c) instead, with rows as long as the padded input (Lp = P + δ(k − 1)), the C rows of one
kernel offset κ are ONE slice of the example's padded input read flat:

    cols[n][(κ, c), q] = zp_flat[n, c·Lp + q + κδ],   q < Lp                  (n, K·C [+ 1], Lp)

and the products read the first P columns of each row only (a strided view; BLAS takes the row
stride). The columns q ≥ P hold the next channel's first floats and are never read.

Backward's ∂J/∂cols come in the same layout, written by the product into the first P columns of rows
whose last δ(k − 1) columns stay zero; col2im is then, for each κ, one add of a whole example:

    dzp_flat[n, κδ : κδ + C·Lp − δ(k − 1)] += dcols_flat[n, κ, : C·Lp − δ(k − 1)]

where a row's zero columns land on the next positions and change nothing. The first offset is a copy
instead of an add onto zeros (the same values; only a −0 may become +0). Each position receives its K
terms in the order κ = 0, 1, …, as in ``col2im_examples``.

The rows (κ, c) need W₂'s columns in the same order (``line_weights``), and ∂J/∂W comes back in it
(``from_line_order``). Measured (float32, 1 thread, 32 examples of Conv1D 8→16, L 256, k 5): col2im
224 → 46 µs.
"""

from __future__ import annotations

import numpy as np

from nncli.core.kernels.im2col import Geometry
from nncli.core.kernels.workspace import SHARED


def line_fits(zp: np.ndarray, geom: Geometry) -> bool:
    """Whether the line layout applies: Conv1D at stride 1, each example's padded rows contiguous."""
    if geom.nd != 1 or geom.stride != (1,):
        return False
    item = zp.itemsize
    return (
        zp.strides[2] == item
        and zp.strides[1] == zp.shape[2] * item
        and zp.strides[0] == zp.shape[1] * zp.strides[1]
    )


def line_weights(W: np.ndarray) -> np.ndarray:
    """W (C', C, k) as W₂ (C', k·C), its columns in the line's (κ, c) order."""
    return W.transpose(0, 2, 1).reshape(W.shape[0], -1)


def from_line_order(dW2: np.ndarray, C: int, k: int) -> np.ndarray:
    """∂J/∂W₂ as (k·C, C'), rows in (κ, c) order, back to W's shape (C', C, k)."""
    return dW2.reshape(k, C, -1).transpose(2, 1, 0)


def im2col_line(zp: np.ndarray, geom: Geometry, n0: int, n1: int, bias: bool, slot: int) -> np.ndarray:
    """The examples n0..n1 of the padded input (N, C, Lp) as columns (n, k·C [+ 1], P): a view of
    the first P columns of rows Lp long, the last row ones when ``bias``."""
    C, Lp = zp.shape[1:]
    k, delta = geom.kernel[0], geom.dilation[0]
    P = Lp - delta * (k - 1)
    n = n1 - n0
    cols = SHARED.get("conv.lcols", (n, k * C + bias, Lp), zp.dtype, slot)
    src = zp[n0:n1].reshape(n, C * Lp)
    for kappa in range(k):
        shift = kappa * delta
        # the last row's final ``shift`` columns lie past the example's end: left as they are, unread
        np.copyto(
            cols[:, kappa * C : (kappa + 1) * C].reshape(n, C * Lp)[:, : C * Lp - shift], src[:, shift:]
        )
    if bias:
        cols[:, k * C] = 1
    return cols[:, :, :P]


def dcols_line(geom: Geometry, n: int, n_max: int, C: int, Lp: int, dtype, slot: int) -> np.ndarray:
    """A (n, k·C, Lp) buffer for ∂J/∂cols whose columns from P on are zero: write the product into
    its ``[..., :P]``. Keyed by δ(k − 1) so that no user of the same buffer writes those columns,
    and sized for ``n_max`` examples so that blocks of other sizes do not reset it."""
    k, tail = geom.kernel[0], geom.dilation[0] * (geom.kernel[0] - 1)
    return SHARED.get(f"conv.dline{tail}", (n_max, k * C, Lp), dtype, slot, fill=0.0)[:n]


def col2im_line(dcols: np.ndarray, geom: Geometry, dzp: np.ndarray) -> np.ndarray:
    """Adjoint of ``im2col_line``: dzp (n, C, Lp) ← the K slices of dcols (n, k·C, Lp), whose
    columns from P on are zero; dzp's previous values are overwritten, not added to."""
    n, C, Lp = dzp.shape
    k, delta = geom.kernel[0], geom.dilation[0]
    span = C * Lp - delta * (k - 1)
    flat = dzp.reshape(n, C * Lp)
    d = dcols.reshape(n, k, C * Lp)
    np.copyto(flat[:, :span], d[:, 0, :span])
    flat[:, span:] = 0
    for kappa in range(1, k):
        shift = kappa * delta
        flat[:, shift : shift + span] += d[:, kappa, :span]
    return dzp
