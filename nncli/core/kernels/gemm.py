"""A small matrix times wide blocks of columns, cut so that each BLAS call stays small.

The convolutions' products W₂ · cols have few rows (C' = 16–64 output channels) and many columns
(positions). OpenBLAS computes a product with m·k·n ≤ 10⁶ by a kernel that reads both operands in
place; above that it packs them into its blocked layout, which on these skinny shapes runs at 60–75 %
of that speed. Cutting the columns into blocks that each stay under the bar keeps every call on the
fast kernel. Measured (float32, 1 thread, numpy's OpenBLAS 0.3.31 on an AVX-512 x86-64, batched over
16–32 examples, GFLOP/s whole → in blocks):

    (16 × 76) @ (76 × 1148)    135 → 192      (32 × 432) @ (432 × 78)    110 → 194
    (32 × 145) @ (145 × 286)   133 → 210      (32 × 145) @ (145 × 840)   109 → 143
    (16 × 288) @ (288 × 286)   118 → 161

Blocks narrower than 64 columns lose ((64 × 289) @ (289 × 286) in 48-column blocks: 141 → 135), so
such products stay whole. The blocks depend only on the shapes; each column of the result is one
column's product, so the blocks change no value's meaning, only which kernel computes it.
"""

from __future__ import annotations

import numpy as np

#: m·k·n up to which OpenBLAS multiplies without packing (its small-matrix kernels' bar)
SMALL_PRODUCT = 1_000_000
#: narrower blocks of columns cost more in calls than the small kernel saves
MIN_BLOCK_COLUMNS = 64


def column_block(m: int, k: int, n: int) -> int:
    """Columns per block for an (m, k) @ (k, n) product: ``n`` (whole) unless blocks pay."""
    if m * k * n <= SMALL_PRODUCT:
        return n
    width = SMALL_PRODUCT // (m * k)
    width -= width % 16  # whole cache lines of float32 per row
    return n if width < MIN_BLOCK_COLUMNS else width


def matmul_columns(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = a @ b`` for a (m, k) and b (..., k, n), by blocks of ``column_block`` columns."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    width = column_block(m, k, n)
    if width >= n:
        return np.matmul(a, b, out=out)
    for j in range(0, n, width):
        np.matmul(a, b[..., j : j + width], out=out[..., j : j + width])
    return out
