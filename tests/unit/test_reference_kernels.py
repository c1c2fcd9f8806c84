"""Each fast kernel agrees with the reference maths written beside it in the layer file.

``LN`` and ``Conv1D``/``Conv2D`` keep ``reference_forward``/``reference_backward`` (the notes'
equations in plain numpy); their ``forward``/``backward`` call the blocked, threaded kernels in
``nncli.core.kernels``. In float64 both must agree to 1e-12 (relative), at the layers' example
settings and at sizes that are cut into several blocks and run on two threads.
"""

from __future__ import annotations

import numpy as np
import pytest

from nncli.core.kernels import conv as conv_kernel
from nncli.core.kernels import layernorm as ln_kernel
from nncli.core.kernels.threads import row_blocks
from nncli.core.kernels.workspace import Workspace
from nncli.core.layers.conv import Conv1D, Conv2D
from nncli.core.layers.norm import LN

TOL = 1e-12

# (class, hyper-parameters, per-example shape, batch)
CASES = [(cls, hp, shape, 3) for cls in (LN, Conv1D, Conv2D) for hp, shape in cls.examples()]
BIG = [  # several blocks, and two threads where the machine has two cores
    (LN, {}, (512,), 2048),  # 1M elements: blocks of 256K
    (LN, {"affine": "per_feature"}, (4, 128), 2050),  # a short last block
    (LN, {"affine": "none"}, (300,), 4000),
    (Conv1D, {"out": 6, "kernel": 5}, (8, 320), 64),  # 819K elements of columns
    (Conv1D, {"out": 5, "kernel": 4, "padding": "same", "dilation": 3, "bias": False}, (6, 560), 64),
    (Conv1D, {"out": 7, "kernel": 3, "padding": "valid"}, (8, 420), 80),  # unpadded: z read in place
    (Conv2D, {"out": 16, "kernel": 3, "padding": 1}, (3, 24, 24), 64),  # v onto the grid for ∂J/∂z
    (Conv2D, {"out": 16, "kernel": 3, "stride": 2, "padding": 1}, (8, 32, 32), 64),  # per phase
    (Conv1D, {"out": 8, "kernel": 4, "stride": 2, "padding": 1, "dilation": 2}, (6, 600), 80),
    (Conv2D, {"out": 16, "kernel": [3, 2], "padding": "same", "dilation": 2, "bias": False}, (4, 20, 22), 56),
    (Conv2D, {"out": 4, "kernel": 3, "padding": 1}, (6, 20, 20), 32),
    # products of more than 10⁶ multiply-adds per example, cut into blocks of columns (kernels.gemm)
    (Conv2D, {"out": 32, "kernel": 3, "padding": 1}, (16, 16, 16), 16),
    (
        Conv2D,
        {"out": 3, "kernel": [3, 2], "stride": [2, 1], "padding": "valid", "bias": False},
        (5, 41, 40),
        24,
    ),
]
#: products too large for column blocks: columns on the grid laid out channel-major
#: (``conv.channel_major``) in forward, ∂J/∂W and ∂J/∂z
CHANNEL_MAJOR = [
    (Conv2D, {"out": 64, "kernel": 3, "padding": 1}, (32, 12, 12), 16),
    (Conv2D, {"out": 40, "kernel": [5, 3], "padding": "same", "bias": False}, (36, 10, 12), 12),
]
BIG += CHANNEL_MAJOR


def _id(case):
    cls, hp, shape, n = case
    return f"{cls.__name__}-{hp}-{n}x{shape}"


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _layer(cls, hp, shape, seed=0):
    rng = np.random.default_rng(seed)
    m = cls(**hp).build(shape, rng)
    for p in m.params.values():  # LN's γ = 1, β = 0 would hide their terms
        p[...] = p + 0.5 * rng.normal(size=p.shape)
    return m


@pytest.mark.parametrize("case", CASES + BIG, ids=_id)
def test_kernel_matches_reference(case, monkeypatch):
    cls, hp, shape, n = case
    if case in BIG:  # two threads even on a one-core machine, so the threaded path always runs
        monkeypatch.setattr(ln_kernel, "workers", lambda size: 2)
        monkeypatch.setattr(conv_kernel, "workers", lambda size: 2)
    m = _layer(cls, hp, shape)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, *shape))
    u = m.forward(z)
    v = rng.normal(size=u.shape)
    m.zero_grads()
    dz = m.backward(v)
    assert _rel(u, m.reference_forward(z)) <= TOL
    ref_dz, ref_grads = m.reference_backward(z, v)
    assert _rel(dz, ref_dz) <= TOL
    assert set(ref_grads) == set(m.grads)
    for k, g in ref_grads.items():
        assert g.shape == m.grads[k].shape and _rel(m.grads[k], g) <= TOL, k


@pytest.mark.parametrize("case", BIG, ids=_id)
def test_big_cases_run_in_several_blocks(case):
    cls, hp, shape, n = case
    m = _layer(cls, hp, shape)
    if cls is LN:
        d = int(np.prod(shape))
        assert len(row_blocks(n, d, ln_kernel.BLOCK)) >= 2
        assert len(row_blocks(n, d, ln_kernel.BACKWARD_BLOCK)) >= 2
    else:
        out = m.output_shape(shape)[1:]
        columns = n * shape[0] * m.geom.K * int(np.prod(out))
        bar = conv_kernel._parallel_from(cls is Conv1D and m.geom.stride == (1,))  # the line's own bar
        assert columns >= bar and len(conv_kernel._blocks(n, columns // n, bar)) >= 2


@pytest.mark.parametrize("case", CHANNEL_MAJOR, ids=_id)
def test_channel_major_cases_take_that_layout(case, monkeypatch):
    # the layout the reference test above checks is the one these shapes are meant to exercise
    cls, hp, shape, n = case
    layouts = []
    grid_columns = conv_kernel.grid_columns

    def spy(*args):
        layouts.append(args[-1])
        return grid_columns(*args)

    monkeypatch.setattr(conv_kernel, "grid_columns", spy)
    m = _layer(cls, hp, shape)
    u = m.forward(np.ones((n, *shape)))
    m.backward(np.ones_like(u))
    assert len(layouts) >= 3 and all(layouts)  # forward, ∂J/∂W and ∂J/∂z, every block


def test_workspace_reuses_bounded_buffers_and_refills_borders():
    ws = Workspace()
    a = ws.get("x", (4, 5), np.float32)
    b = ws.get("x", (2, 3), np.float32)
    assert np.shares_memory(a, b) and b.flags.c_contiguous and ws.nbytes == 4 * 5 * 4
    assert not np.shares_memory(a, ws.get("x", (4, 5), np.float32, slot=1))  # one per thread slot
    assert ws.get("x", (4, 5), np.float64).dtype == np.float64  # dtypes kept apart
    p = ws.get("pad", (2, 3), np.float64, fill=0.0)
    p[1:] = 7.0  # a caller writes the interior only
    assert ws.get("pad", (2, 3), np.float64, fill=0.0)[0].tolist() == [0.0] * 3  # same shape: kept
    q = ws.get("pad", (3, 2), np.float64, fill=-np.inf)  # new shape or fill: written again
    assert np.all(q == -np.inf)
    ws.clear()
    assert ws.nbytes == 0
