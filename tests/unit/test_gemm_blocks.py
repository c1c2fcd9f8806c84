"""Products by blocks of columns (nncli.core.kernels.gemm): where they are cut, and that they are the product."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.core.kernels.gemm import MIN_BLOCK_COLUMNS, SMALL_PRODUCT, column_block, matmul_columns


def test_blocks_keep_each_call_under_the_small_product_bar():
    assert column_block(32, 145, 200) == 200, "small enough whole"
    width = column_block(32, 145, 286)
    assert width < 286 and width % 16 == 0 and 32 * 145 * width <= SMALL_PRODUCT
    assert 32 * 145 * (width + 16) > SMALL_PRODUCT, "the widest such block"
    # blocks narrower than MIN_BLOCK_COLUMNS would cost more calls than they save: whole
    assert 64 * 289 * MIN_BLOCK_COLUMNS > SMALL_PRODUCT
    assert column_block(64, 289, 286) == 286


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_blocks_give_the_product(dtype, batch):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(32, 145)).astype(dtype)
    b = rng.normal(size=(*batch, 145, 1000)).astype(dtype)  # 215-wide blocks and a short last one
    out = np.empty((*batch, 32, 1000), dtype)
    got = matmul_columns(a, b, out=out)
    assert got is out
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.max(np.abs(got - want)) <= tol * np.max(np.abs(want))
