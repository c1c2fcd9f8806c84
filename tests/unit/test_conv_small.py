"""The small-shape convolution (``kernels.conv_small``): the notes' equations, conv.py's results,
PyTorch, the same bits on 1 and 2 threads, and which layers take it.

Every layer example is tiny, so the registry-wide gradchecks and PyTorch comparisons of Conv1D and
Conv2D already run through this path; here each setting is checked against the reference maths and
against ``kernels.conv`` (forced) at once, including strides, dilations, asymmetric padding and
kernels that skip inputs (stride > kernel), in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nncli.core.layers.conv as layer
from nncli.core.kernels import conv_small
from nncli.core.kernels.conv_small import small_path
from nncli.core.kernels.workspace import SHARED
from nncli.core.layers.conv import Conv1D, Conv2D

MNIST1D = [  # the paper CNN's three layers, batch 100
    (Conv1D, {"out": 25, "kernel": 5, "stride": 2, "padding": 1}, (1, 40), 100),
    (Conv1D, {"out": 25, "kernel": 3, "stride": 2, "padding": 1}, (25, 19), 100),
    (Conv1D, {"out": 25, "kernel": 3, "stride": 2, "padding": 1}, (25, 10), 100),
]
DIGITS = [(Conv2D, {"out": 64, "kernel": 3, "stride": 2}, (32, 8, 8), 32)]  # configs/digits_cnn.yaml
LONG_COLUMNS = [  # Conv2D with C·K ≥ 32 on 64 to 256 positions
    (Conv2D, {"out": 48, "kernel": 3, "padding": 1}, (32, 8, 8), 16),  # the three-stage CNN's last conv
    (Conv2D, {"out": 6, "kernel": 3, "padding": 1}, (4, 10, 10), 3),
]
SETTINGS = (
    [(cls, hp, shape, 4) for cls in (Conv1D, Conv2D) for hp, shape in cls.examples()]
    + [
        (Conv1D, {"out": 2, "kernel": 3, "stride": 2, "padding": 2, "dilation": 2}, (3, 13), 5),
        (Conv1D, {"out": 3, "kernel": 2, "stride": 3, "padding": "valid"}, (2, 11), 3),  # skips inputs
        (Conv1D, {"out": 2, "kernel": 4, "padding": "same", "dilation": 3}, (2, 12), 2),  # pad 4 | 5
        (
            Conv2D,
            {"out": 2, "kernel": [3, 2], "stride": [2, 3], "padding": [2, 1], "dilation": [1, 2]},
            (3, 9, 8),
            3,
        ),
        (Conv2D, {"out": 3, "kernel": 1, "stride": 2, "padding": "valid", "bias": False}, (2, 5, 5), 2),
        (Conv2D, {"out": 4, "kernel": [2, 4], "padding": "same"}, (2, 5, 7), 3),
    ]
    + MNIST1D
    + DIGITS
    + LONG_COLUMNS
)


def _id(case):
    cls, hp, shape, n = case
    return f"{cls.__name__}-{hp}-{n}x{shape}"


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _layer(cls, hp, shape, dtype=np.float64, seed=0):
    return cls(**hp).build(shape, np.random.default_rng(seed), dtype=dtype)


def _setup(case, seed: int, dtype=np.float64):
    """The layer of ``case``, an input batch z and a gradient v = ∂J/∂u for it."""
    cls, hp, shape, n = case
    m = _layer(cls, hp, shape, dtype)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n,) + shape).astype(dtype)
    v = rng.normal(size=(n,) + m.output_shape(shape)).astype(dtype)
    return m, z, v


def _run(m, z, v, input_grad=True):
    """u, ∂J/∂z (None without the input gradient) and fresh ∂J/∂θ of one forward and backward."""
    m.zero_grads()
    u = m.forward(z)
    if input_grad:
        dz = m.backward(v)
    else:
        dz = m.backward_params(v)
    return u, dz, {k: g.copy() for k, g in m.grads.items()}


#: both layouts of a plan, whatever the example size would choose
LAYOUTS = pytest.mark.parametrize("channels_last", [False, True], ids=["batch_last", "channels_last"])


def _force(monkeypatch, channels_last: bool) -> None:
    monkeypatch.setattr(conv_small, "_CL_FROM", -1 if channels_last else 1 << 62)


@LAYOUTS
@pytest.mark.parametrize("case", SETTINGS, ids=_id)
def test_matches_the_notes_equations_and_the_general_kernel(case, channels_last, monkeypatch):
    cls, hp, shape, n = case
    _force(monkeypatch, channels_last)
    m, z, v = _setup(case, 1)
    u, dz, grads = _run(m, z, v)
    assert m._plan is not None and m._plan.channels_last == channels_last  # the small path ran
    ref_dz, ref_grads = m.reference_backward(z, v)
    assert _rel(u, m.reference_forward(z)) <= 1e-12
    assert dz.shape == z.shape and dz.flags.c_contiguous and _rel(dz, ref_dz) <= 1e-12
    for k, g in ref_grads.items():
        assert _rel(grads[k], g) <= 1e-12, k
    monkeypatch.setattr(layer, "small_path", lambda *sizes: False)
    general = _layer(cls, hp, shape)
    u2, dz2, grads2 = _run(general, z, v)
    assert general._plan is None
    assert _rel(u, u2) <= 1e-13 and _rel(dz, dz2) <= 1e-13
    for k in grads:
        assert _rel(grads[k], grads2[k]) <= 1e-13, k


@pytest.mark.parametrize("case", MNIST1D + DIGITS, ids=_id)
def test_matches_torch_float64(case):
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the cross-check")
    cls, hp, shape, n = case
    m = _layer(cls, hp, shape)
    rng = np.random.default_rng(2)
    z = rng.normal(size=(n,) + shape)
    t = m.to_torch()
    zt = torch.from_numpy(z.copy()).requires_grad_()
    ut = t(zt)
    v = rng.normal(size=tuple(ut.shape))
    ut.backward(torch.from_numpy(v))
    u, dz, grads = _run(m, z, v)
    assert m._plan is not None
    assert _rel(u, ut.detach().numpy()) <= 1e-10
    assert _rel(dz, zt.grad.numpy()) <= 1e-10
    assert _rel(grads["weight"], t.weight.grad.numpy()) <= 1e-10
    assert _rel(grads["bias"], t.bias.grad.numpy()) <= 1e-10


@LAYOUTS
@pytest.mark.parametrize("case", MNIST1D[:1] + DIGITS, ids=_id)
def test_parameter_gradients_alone_are_the_same(case, channels_last, monkeypatch):
    """A chain's first layer asks only ∂J/∂θ (``backward_params``): same values, no ∂J/∂z."""
    _force(monkeypatch, channels_last)
    m, z, v = _setup(case, 3)
    _, dz, full = _run(m, z, v)
    _, none, alone = _run(m, z, v, input_grad=False)
    assert none is None
    for k in full:
        np.testing.assert_array_equal(alone[k], full[k], err_msg=k)


@LAYOUTS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", MNIST1D + DIGITS, ids=_id)
def test_same_bits_with_one_and_two_blas_threads(case, dtype, channels_last, monkeypatch):
    _force(monkeypatch, channels_last)
    m, z, v = _setup(case, 4, dtype)
    with threadpool_limits(1, user_api="blas"):
        one = _run(m, z, v)
    with threadpool_limits(2, user_api="blas"):
        two = _run(m, z, v)
    assert m._plan is not None
    for a, b in zip(one[:2], two[:2]):
        np.testing.assert_array_equal(a, b)
    for k in one[2]:
        np.testing.assert_array_equal(one[2][k], two[2][k], err_msg=k)


def test_outputs_are_fresh_arrays_and_the_input_is_untouched():
    """The plan's buffers are reused on every call; what forward and backward return is not."""
    cls, hp, shape, n = MNIST1D[1]
    m = _layer(cls, hp, shape)
    rng = np.random.default_rng(5)
    z1, z2 = rng.normal(size=(2, n) + shape)
    z1_copy = z1.copy()
    v = rng.normal(size=(n,) + m.output_shape(shape))
    u1 = m.forward(z1)
    dz1 = m.backward(v)
    u1_copy, dz1_copy = u1.copy(), dz1.copy()
    m.forward(z2)
    m.backward(2 * v)
    np.testing.assert_array_equal(u1, u1_copy)
    np.testing.assert_array_equal(dz1, dz1_copy)
    np.testing.assert_array_equal(z1, z1_copy)


def test_plans_are_made_once_per_shape_and_a_few_are_kept():
    cls, hp, shape, _ = MNIST1D[2]
    m = _layer(cls, hp, shape)
    rng = np.random.default_rng(6)
    m.forward(rng.normal(size=(10,) + shape))
    first = m._plan
    m.forward(rng.normal(size=(10,) + shape))
    assert m._plan is first
    for n in (3, 4, 5, 6):
        u = m.forward(rng.normal(size=(n,) + shape))
        plan = m._plan
        assert u.shape[0] == n and plan is not None and u.shape[0] == plan.N
    assert len(m._plans) == layer._PLANS_KEPT
    assert [key[0][0] for key in m._plans] == [4, 5, 6]  # the oldest dropped


def test_which_layers_take_the_small_path():
    # the MNIST-1D CNN's layers and the digits CNN's strided Conv2D
    for cls, hp, shape, n in MNIST1D + DIGITS + LONG_COLUMNS:
        m = _layer(cls, hp, shape)
        out = m.output_shape(shape)
        assert small_path(n, shape[0], m.geom.K, int(np.prod(out[1:])), m.geom.nd)
    assert not small_path(0, 25, 3, 10)  # an empty batch: conv.py's path handles it
    assert not small_path(64, 8, 5, 256)  # Conv1D 8→16 on L 256: long rows, conv.py's by-example GEMMs
    assert not small_path(64, 16, 9, 784)  # Conv2D 16→32 on 28×28
    assert not small_path(2000, 25, 3, 10)  # enough work for conv.py's blocks on two threads
    assert conv_small.MAX_POSITIONS <= 64
    # a Conv2D with long columns up to 256 positions: the three-stage CNN's 32→48 layer on 8×8
    assert small_path(16, 32, 9, 64, nd=2) and not small_path(16, 32, 9, 64, nd=1)
    assert small_path(8, 16, 9, 256, nd=2) and not small_path(8, 16, 9, 257, nd=2)
    assert not small_path(64, 1, 9, 64, nd=2)  # the digits CNN's first layer: columns of 9


@LAYOUTS
def test_views_follow_the_shared_buffer_when_it_is_replaced(channels_last, monkeypatch):
    """The scratch views are carved from ``workspace.SHARED``'s buffer; when a larger layer (or
    anything else) replaces that buffer, the plan must carve them again, not write into the old one."""
    _force(monkeypatch, channels_last)
    small, big = _setup(MNIST1D[2], 7), _setup(MNIST1D[1], 8)
    m, z, v = small
    first = _run(m, z, v)
    views = m._plan._views()
    assert np.shares_memory(views["cols_in"], views["cols"])
    _run(*big)  # a larger request: the shared buffer grows, so it is a new array
    SHARED.clear()
    again = _run(m, z, v)
    assert m._plan._views()["cols"].base is not views["cols"].base
    for a, b in zip(first[:2], again[:2]):
        np.testing.assert_array_equal(a, b)
    for k in first[2]:
        np.testing.assert_array_equal(first[2][k], again[2][k], err_msg=k)
