"""kernels.threads.matmul: small GEMMs on one BLAS thread, the same product as ``a @ b``."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nncli.core.kernels.threads as threads

SHAPES = [((8, 16), (16, 4)), ((64, 4096), (4096, 10)), ((256, 512), (512, 512))]  # tiny, mid, large


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes,single", zip(SHAPES, [False, True, False]), ids=["tiny", "mid", "large"])
def test_the_same_product_as_numpys_on_the_thread_count_it_runs(shapes, single, dtype):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    for n in (1, 2):
        with threadpool_limits(limits=1 if single else n, user_api="blas"):
            expected = a @ b
            expected_t = b.T @ a.T  # strided operands
        with threadpool_limits(limits=n, user_api="blas"):
            np.testing.assert_array_equal(threads.matmul(a, b), expected)
            np.testing.assert_array_equal(threads.matmul(b.T, a.T), expected_t)


@pytest.mark.parametrize("shapes,single", zip(SHAPES, [False, True, False]))
def test_only_mid_sized_products_hold_blas_at_one_thread(shapes, single, monkeypatch):
    seen = []
    monkeypatch.setattr(threads, "_set_blas_threads", seen.append)
    monkeypatch.setattr(threads, "_blas_threads", lambda: 2)
    a, b = np.ones(shapes[0], np.float32), np.ones(shapes[1], np.float32)
    threads.matmul(a, b)
    assert seen == ([1, 2] if single else [])


def test_blas_is_restored_when_the_product_fails(monkeypatch):
    seen = []
    monkeypatch.setattr(threads, "_set_blas_threads", seen.append)
    monkeypatch.setattr(threads, "_blas_threads", lambda: 2)
    a = np.ones((64, 4096), np.float32)
    with pytest.raises(ValueError):
        threads.matmul(a, np.ones((4095, 10), np.float32))
    assert seen == [1, 2]
