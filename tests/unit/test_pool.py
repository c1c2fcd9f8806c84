"""Max and average pooling: gradients, agreement with PyTorch (ties, −inf padding), shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from nncli.core.errors import ShapeError
from nncli.core.layers.pool import AvgPool1D, AvgPool2D, MaxPool1D, MaxPool2D
from nncli.core.registry import modules
from nncli.diagnostics.gradcheck import check_module

ALL = (MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D)


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _id(case):
    cls, hp, shape = case
    return f"{cls.__name__}-{hp}-{shape}"


EXAMPLES = [(cls, hp, shape) for cls in ALL for hp, shape in cls.examples()]


@pytest.mark.parametrize("case", EXAMPLES, ids=_id)
def test_gradcheck_examples(case):
    cls, hp, shape = case
    rng = np.random.default_rng(1)
    m = cls(**hp).build(shape, rng)
    (rep,) = check_module(m, rng.normal(size=(2,) + shape))
    assert rep.passed and rep.checked > 0, rep


TORCH_CASES = [
    (cls, hp, shape)
    for cls in (MaxPool1D, AvgPool1D)
    for hp, shape in [
        ({"kernel": 3}, (2, 10)),
        ({"kernel": 4, "stride": 1, "padding": 2}, (3, 9)),
        ({"kernel": 2, "stride": 3, "padding": 1}, (1, 8)),
    ]
] + [
    (cls, hp, shape)
    for cls in (MaxPool2D, AvgPool2D)
    for hp, shape in [
        ({"kernel": 2}, (2, 6, 7)),
        ({"kernel": 3, "stride": 2, "padding": 1}, (2, 7, 6)),
        ({"kernel": [2, 3], "stride": [1, 2], "padding": [1, 1]}, (1, 5, 8)),
    ]
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=_id)
def test_matches_torch_float64(case):
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the cross-check")
    cls, hp, shape = case
    rng = np.random.default_rng(2)
    m = cls(**hp).build(shape, rng)
    z = rng.normal(size=(3,) + shape)
    zt = torch.from_numpy(z.copy()).requires_grad_()
    ut = m.to_torch()(zt)
    u = m.forward(z)
    assert u.shape == tuple(ut.shape) and u.shape[1:] == m.output_shape(shape)
    assert _rel(u, ut.detach().numpy()) <= 1e-10
    v = rng.normal(size=u.shape)
    ut.backward(torch.from_numpy(v))
    assert _rel(m.backward(v), zt.grad.numpy()) <= 1e-10


@pytest.mark.parametrize(
    "cls, shape, hp",
    [
        (MaxPool1D, (2, 9), {"kernel": 3, "stride": 2, "padding": 1}),
        (MaxPool2D, (2, 6, 6), {"kernel": 3, "stride": 1, "padding": 1}),
    ],
)
def test_ties_go_to_the_first_maximum_like_torch(cls, shape, hp):
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the tie-breaking check")
    rng = np.random.default_rng(3)
    z = rng.integers(0, 2, size=(2,) + shape).astype(np.float64)  # many ties
    m = cls(**hp).build(shape, rng)
    v = rng.normal(size=m.forward(z).shape)
    zt = torch.from_numpy(z.copy()).requires_grad_()
    m.to_torch()(zt).backward(torch.from_numpy(v))
    # same positions (exact zeros elsewhere); overlapping windows may sum in another order
    np.testing.assert_allclose(m.backward(v), zt.grad.numpy(), rtol=1e-12, atol=0)


def test_constant_input_routes_to_first_element_of_each_window():
    m = MaxPool1D(kernel=2).build((1, 6), np.random.default_rng(0))
    m.forward(np.ones((1, 1, 6)))
    dz = m.backward(np.array([[[1.0, 2.0, 3.0]]]))
    np.testing.assert_array_equal(dz, [[[1, 0, 2, 0, 3, 0]]])


def test_max_pool_pads_with_minus_inf():
    m = MaxPool1D(kernel=3, stride=2, padding=1).build((1, 5), np.random.default_rng(0))
    z = -np.arange(1.0, 6.0).reshape(1, 1, 5)  # all negative: zero padding would win
    np.testing.assert_array_equal(m.forward(z), [[[-1.0, -2.0, -4.0]]])


def test_avg_pool_counts_padding_in_the_divisor():
    m = AvgPool1D(kernel=3, stride=2, padding=1).build((1, 5), np.random.default_rng(0))
    z = np.arange(1.0, 6.0).reshape(1, 1, 5)
    np.testing.assert_allclose(m.forward(z), [[[3 / 3, 9 / 3, 9 / 3]]])


@pytest.mark.parametrize("cls", ALL)
def test_float32_stays_float32(cls):
    shape = (2, 8) if cls.nd == 1 else (2, 6, 6)
    rng = np.random.default_rng(4)
    m = cls(kernel=2).build(shape, rng, np.float32)
    z = rng.normal(size=(3,) + shape).astype(np.float32)
    u = m.forward(z)
    assert u.dtype == np.float32
    assert m.backward(np.ones_like(u)).dtype == np.float32


@pytest.mark.parametrize("cls", ALL)
def test_backward_keeps_v_and_input(cls):
    shape = (2, 8) if cls.nd == 1 else (2, 6, 6)
    rng = np.random.default_rng(5)
    m = cls(kernel=3, stride=2, padding=1).build(shape, rng)
    z = rng.normal(size=(2,) + shape)
    z0 = z.copy()
    v = rng.normal(size=m.forward(z).shape)
    v0 = v.copy()
    m.backward(v)
    assert np.array_equal(v, v0) and np.array_equal(z, z0)


def test_stride_defaults_to_kernel_and_shapes():
    assert MaxPool2D(kernel=2).build((3, 8, 7), np.random.default_rng(0)).output_shape((3, 8, 7)) == (3, 4, 3)
    assert AvgPool1D(kernel=3, stride=1).output_shape((2, 10)) == (2, 8)
    assert MaxPool1D(kernel=2).hparams() == {"kernel": 2}


def test_errors():
    with pytest.raises(ShapeError, match="L = 2"):
        MaxPool1D(kernel=3).build((1, 2), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"\(C, H, W\)"):
        AvgPool2D(kernel=2).build((1, 8), np.random.default_rng(0))
    with pytest.raises(ValidationError, match="kernel // 2"):
        MaxPool1D(kernel=2, padding=2)
    with pytest.raises(ValidationError):
        MaxPool2D(kernel=[2, 2, 2])


def test_registry_names():
    assert modules.lookup("maxpool1d") is MaxPool1D
    assert modules.lookup("MaxPool2d") is MaxPool2D
    assert modules.lookup("AveragePooling1D") is AvgPool1D
    assert modules.lookup("AvgPool2d") is AvgPool2D
    assert modules.create("MaxPool2D", pool_size=2).geom.stride == (2, 2)
