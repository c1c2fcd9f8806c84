"""ReLU and pooling per block of examples (``kernels.threads.over_examples``): the same bits whether
the batch is one block, many blocks on one thread, or many blocks on two threads.

The arrays are big enough (≥ 1M elements) to be cut into blocks and spread over threads. Inputs hold
ties and NaN, so the max pooling's argmax rules (first maximum; last NaN) are crossed at block edges.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nncli.core.kernels.threads as threads
from nncli.core.chain import Chain
from nncli.core.registry import modules

CASES = [
    ("ReLU", {}, (16, 33, 33), 64),
    ("MaxPool2D", {"kernel": 2}, (16, 32, 32), 64),  # windows tile the input: ∂J/∂z written
    ("MaxPool2D", {"kernel": 3, "stride": 2, "padding": 1}, (16, 33, 35), 64),  # overlapping, padded
    ("AvgPool2D", {"kernel": 2}, (16, 32, 32), 64),
    ("AvgPool2D", {"kernel": 3, "stride": 2, "padding": 1}, (16, 33, 35), 64),
    ("MaxPool1D", {"kernel": 3, "stride": 2}, (16, 1025), 64),
]


def _run(case, dtype):
    name, hp, shape, n = case
    rng = np.random.default_rng(3)
    m = Chain([modules.create(name, **hp)], None).build(shape, rng, dtype).modules[0]
    z = np.round(rng.standard_normal((n, *shape)) * 2).astype(dtype)  # few values: many ties
    z.flat[::997] = np.nan
    v = rng.standard_normal((n, *m.output_shape(shape))).astype(dtype)
    v.flat[::5] = -0.0
    return m, z, v


def _once(m, z, v):
    u = m.forward(z).copy()
    return u, np.array(m.backward(v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_blocks_and_threads_give_the_same_bits(case, dtype, monkeypatch):
    m, z, v = _run(case, dtype)
    assert z.size >= threads.MIN_PARALLEL_ELEMENTS  # large enough to run on two threads
    with threadpool_limits(limits=2, user_api="blas"):
        assert threads.workers(z.size) == min(2, os.cpu_count() or 1)
        two = _once(m, z, v)
    with threadpool_limits(limits=1, user_api="blas"):
        one = _once(m, z, v)
        with monkeypatch.context() as mp:  # the whole batch as one block: the plain array passes
            mp.setattr(threads, "row_blocks", lambda n, per, block=0: [(0, n)])
            whole = _once(m, z, v)
    for a, b in ((one, two), (one, whole)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.view(f"u{x.itemsize}"), y.view(f"u{y.itemsize}"))
