"""Convolution columns on the padded-width grid, and the scratch rows the products read.

At stride 1 an output position (y, x) is the grid column q = y·W_pad + x of the padded plane, and
each kernel offset's row of columns is one contiguous slice of it (``im2col.im2col_grid``), copied
whole; the product's extra columns (x ≥ W') are dropped by ``im2col.grid_view``. ``grid_layout``
decides per shape whether ``conv.py`` builds its columns this way, ``channel_major`` whether a
block's columns are one matrix or one per example; ``grid_columns`` builds them and
``grid_product`` multiplies them into u.
"""

from __future__ import annotations

import numpy as np

from nncli.core.kernels.gemm import MIN_BLOCK_COLUMNS, SMALL_PRODUCT, matmul_columns
from nncli.core.kernels.im2col import Geometry, grid_positions, grid_view, im2col_grid
from nncli.core.kernels.workspace import SHARED


def padded_rows(name: str, n: int, rows: int, P: int, dtype, slot: int) -> np.ndarray:
    """A scratch (n, rows, P) array for BLAS whose rows are not a multiple of 2 kB apart.

    Rows exactly 2, 4 or 8 kB apart (P = 512 or 1024 in float32) fall into the same cache sets
    and the GEMMs reading them slow down: float32, 1 thread, (32, 28) @ (28, 1024) per example:
    0.61 ms with rows 4 kB apart, 0.39 ms with 32 more floats per row (0.89 / 0.38 at another
    time); no change at P = 256 or 784. The rows are then a view with a longer stride.
    """
    itemsize = np.dtype(dtype).itemsize
    lead = P + 32 if (P * itemsize) % 2048 == 0 else P
    return SHARED.get(name, (n, rows, lead), dtype, slot)[:, :, :P]


def grid_layout(geom: Geometry, rows: int, out_rows: int, width: int) -> bool:
    """Whether the columns (``rows`` = C·K of them per example) are built on the padded-width grid
    (``im2col_grid``) for a product of ``out_rows`` rows (C') of ``width`` (W') positions: Conv2D at
    stride 1, C·K ≥ 2 C' and at most W'/4 extra columns per row, δ(k_w − 1) < W'/4.

    Each kernel offset's row is then one contiguous slice of the padded plane, copied whole, where
    ``im2col_examples`` copies rows of W' floats one by one (8–32 for the CNN workloads' layers);
    the price is δ(k_w − 1)/W' more GEMM columns and one copy of the product's C' rows of W' floats
    into u (``grid_view``). Measured (float32, 1 thread, ms, 5 rounds at load 14–17, grid / rows of
    W'): 16→32 16×16 k3 (C·K 144, C' 32) forward 1.37 / 1.43, full backward 3.07 / 3.53 (2.84 / 3.55
    in another run); 16→32 28×28 5.46 / 5.93 and 14.7 / 15.2; 32→64 16×16 6.06 / 6.41; but 32→48
    8×8 (W' 6, 33 % more columns) 0.99 / 0.90 and 2.39 / 2.24, and 3→32 32×32 (C·K 27) 2.07 / 1.54.
    Returning u as a strided view of the grid instead (no copy) made the next pooling layer's
    reshapes copy: whole CIFAR CNN steps were 8–17 % slower.

    The forward and a backward for ∂J/∂θ alone narrow this further (``grid_forward``,
    ``conv.conv_backward``).
    """
    if geom.nd != 2 or any(s != 1 for s in geom.stride) or rows < 2 * out_rows:
        return False
    return 4 * geom.dilation[1] * (geom.kernel[1] - 1) < width


#: output widths W' from which the forward copies its columns row by row rather than on the grid
GRID_FORWARD_MAX_WIDTH = 24


def grid_forward(geom: Geometry, rows: int, out_rows: int, width: int) -> bool:
    """``grid_layout`` for the forward product, which also wants rows shorter than
    ``GRID_FORWARD_MAX_WIDTH``: rows of 28 or 32 floats are long enough for numpy's row-by-row
    copy, and the grid's extra columns and its copy of u out of the grid then cost more. Measured
    (float32, 1 thread, CPU ms, medians of 5 alternating rounds, grid / rows of W', same-size
    padding): 16→32 on 28×28 k3, N 64, 7.29 / 6.44 and 7.35 / 6.52; 3→16 on 32×32 k5, N 32,
    1.58 / 1.41; but on 16×16: 16→32 k3, N 64, 2.36 / 2.46; 32→64 6.80 / 7.13; 16→32, N 32,
    1.22 / 1.26."""
    return grid_layout(geom, rows, out_rows, width) and width < GRID_FORWARD_MAX_WIDTH


def channel_major(out_rows: int, rows: int) -> bool:
    """Whether a product (``out_rows``, ``rows``) · columns on the grid takes its columns laid out
    channel-major, (rows [+ 1], n, P_g), rather than by example, (n, rows [+ 1], P_g).

    Channel-major, a block's columns are one (rows, n·P_g) matrix: the product is one GEMM over the
    block, and ∂J/∂W one GEMM whose inner dimension is n·P_g, where by example they are n products
    and a sum of n partials. The copies move the same rows of P_g floats either way. It pays where
    the product is too large to be cut into column blocks under OpenBLAS's small-product bar
    (``gemm.column_block``): each per-example product then packs its operands again. Measured
    (float32, 1 thread, a Conv2D's forward + full backward, N 32 (16 for 64→64), medians of 30
    alternating rounds, by example → channel-major for forward and ∂J/∂W / for ∂J/∂z / both):
    32→64 on 16×16 (forward 64 × 288, ∂J/∂z 32 × 576) 0.994 / 0.967 / 0.919; 64→64 0.933 / 0.911 /
    0.910; but 32→48 on 10×10 (48 × 288, 32 × 432) 1.007 / 1.012, 16→32 on 28×28 (32 × 144,
    16 × 288) 1.028 / 1.007: with column blocks, the per-example layout is as fast or faster.
    """
    return out_rows * rows > SMALL_PRODUCT // MIN_BLOCK_COLUMNS


def grid_columns(
    zp: np.ndarray, geom: Geometry, out: tuple, n0: int, n1: int, bias: bool, slot: int, by_channel: bool
):
    """The examples n0..n1 as columns on the padded-width grid (``im2col_grid``), the last row ones
    when ``bias``: (C·K [+ 1], n, P_g) if ``by_channel`` (``channel_major``), else (n, C·K [+ 1], P_g)."""
    CK, Pg = zp.shape[1] * geom.K, grid_positions(zp.shape[2:], out)
    if by_channel:
        cols = SHARED.get("conv.gcols", (CK + bias, n1 - n0, Pg), zp.dtype, slot)
        im2col_grid(zp[n0:n1], geom, out, into=cols[:CK].transpose(1, 0, 2))
        if bias:
            cols[CK] = 1
        return cols
    cols = padded_rows("conv.gcols", n1 - n0, CK + bias, Pg, zp.dtype, slot)
    im2col_grid(zp[n0:n1], geom, out, into=cols[:, :CK])
    if bias:
        cols[:, CK] = 1
    return cols


def grid_product(
    Wb: np.ndarray, cols: np.ndarray, width: int, out: tuple, dest: np.ndarray, slot: int, by_channel: bool
):
    """dest (n, C', *out) ← the (H', W') positions of Wb · cols, cols from ``grid_columns`` on a
    grid ``width`` wide, channel-major if ``by_channel``."""
    if by_channel:  # one product over the block
        rows, n, Pg = cols.shape
        ug = SHARED.get("conv.gout", (Wb.shape[0], n, Pg), dest.dtype, slot)
        matmul_columns(Wb, cols.reshape(rows, n * Pg), out=ug.reshape(Wb.shape[0], n * Pg))
        np.copyto(dest, grid_view(ug.transpose(1, 0, 2), width, out))
        return
    ug = padded_rows("conv.gout", cols.shape[0], Wb.shape[0], cols.shape[2], dest.dtype, slot)
    matmul_columns(Wb, cols, out=ug)
    np.copyto(dest, grid_view(ug, width, out))
