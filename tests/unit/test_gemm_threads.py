"""Small products on one BLAS thread (kernels.threads.small_for_threads, matmul_one_thread; MM)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nncli.core.kernels.threads as threads
from nncli.core.chain import Chain
from nncli.core.registry import modules

# (m, k, n): below OpenBLAS's own limit, between it and ours, above ours
SIZES = [(8, 16, 4), (64, 4096, 10), (256, 512, 512)]


@pytest.mark.parametrize("size,one", zip(SIZES, [False, True, False]))
def test_only_mid_sized_products_are_held_at_one_thread(size, one):
    assert threads.small_for_threads(*size) is one


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_product_is_numpys_on_one_thread(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 4096)).astype(dtype), rng.standard_normal((4096, 10)).astype(dtype)
    with threadpool_limits(limits=1, user_api="blas"):
        expected = a @ b
    for n in (1, 2):
        with threadpool_limits(limits=n, user_api="blas"):
            np.testing.assert_array_equal(threads.matmul_one_thread(a, b), expected)
            assert threads._blas_threads() == min(n, threads.os.cpu_count() or 1)  # restored


def test_blas_is_restored_when_the_product_fails(monkeypatch):
    seen = []
    monkeypatch.setattr(threads, "_set_blas_threads", seen.append)
    monkeypatch.setattr(threads, "_blas_threads", lambda: 2)
    with pytest.raises(ValueError):
        threads.matmul_one_thread(np.ones((64, 4096), np.float32), np.ones((4095, 10), np.float32))
    assert seen == [1, 2]


@pytest.mark.parametrize("batch,one", [(4, False), (64, True)])
def test_mm_holds_its_mid_sized_products_at_one_thread(batch, one, monkeypatch):
    calls = []
    real = threads.matmul_one_thread
    monkeypatch.setattr(
        "nncli.core.layers.linear.matmul_one_thread", lambda a, b: calls.append(a.shape) or real(a, b)
    )
    rng = np.random.default_rng(1)
    mm = Chain([modules.create("MM", out=10)], None).build((4096,), rng, np.float64).modules[0]
    z = rng.standard_normal((batch, 4096))
    u = mm.forward(z)
    dz = mm.backward(np.ones_like(u))
    np.testing.assert_allclose(u, z @ mm.params["weight"].T + mm.params["bias"], rtol=1e-12)
    np.testing.assert_allclose(dz, np.ones_like(u) @ mm.params["weight"], rtol=1e-12)
    assert len(calls) == (3 if one else 0)  # u, ∂J/∂W and ∂J/∂z
