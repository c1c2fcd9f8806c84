"""Flatten, Reshape, Dropout and Residual: shapes, user errors, randomness and parameter names."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from nncli.core import registry
from nncli.core.chain import Chain
from nncli.core.errors import ConfigError, ShapeError, UserError
from nncli.core.layers.dropout import Dropout
from nncli.core.layers.residual import Residual
from nncli.core.layers.shape import Flatten, Reshape


def rng(seed=0):
    return np.random.default_rng(seed)


# -- Flatten / Reshape ---------------------------------------------------------------------------


def test_flatten_round_trip():
    m = Flatten().build((2, 3, 4), rng())
    z = rng().normal(size=(5, 2, 3, 4))
    u = m.forward(z)
    assert m.output_shape((2, 3, 4)) == (24,) and u.shape == (5, 24)
    np.testing.assert_array_equal(u[1], z[1].ravel())
    np.testing.assert_array_equal(m.backward(u), z)


@pytest.mark.parametrize(
    "spec, shape, want",
    [([2, 3], (6,), (2, 3)), ([-1, 2], (3, 4), (6, 2)), ([3, -1], (12,), (3, 4)), ([12], (2, 2, 3), (12,))],
)
def test_reshape_shapes(spec, shape, want):
    m = Reshape(shape=spec).build(shape, rng())
    assert m.output_shape(shape) == want
    z = rng().normal(size=(2, *shape))
    u = m.forward(z)
    assert u.shape == (2, *want)
    np.testing.assert_array_equal(u.reshape(2, -1), z.reshape(2, -1))  # row-major, as torch
    np.testing.assert_array_equal(m.backward(u), z)


def test_reshape_size_mismatch_names_both_sizes():
    with pytest.raises(ShapeError) as e:
        Reshape(shape=[4, 4]).build((2, 5), rng())
    msg = str(e.value)
    assert "16" in msg and "10" in msg and "(2, 5)" in msg
    with pytest.raises(ShapeError, match="not a multiple of 3"):
        Reshape(shape=[3, -1]).build((10,), rng())
    assert isinstance(e.value, UserError)


@pytest.mark.parametrize("bad", [[-1, -1], [0, 4], [-2, 3], []])
def test_reshape_bad_sizes_are_refused(bad):
    with pytest.raises(ValidationError):
        Reshape(shape=bad)


def test_reshape_to_torch_after_conv_shaped_input():
    torch = pytest.importorskip("torch", reason="PyTorch cross-checks need torch installed")
    m = Reshape(shape=[3, 2]).build((2, 3), rng())
    z = rng().normal(size=(4, 2, 3))
    np.testing.assert_array_equal(m.to_torch()(torch.tensor(z)).numpy(), m.forward(z))


# -- Dropout -------------------------------------------------------------------------------------


def test_dropout_rate_scale_and_mean():
    p = 0.3
    m = Dropout(p=p).build((1000,), rng())
    m.rng = rng(42)
    z = np.ones((20, 1000))
    u = m.forward(z)
    dropped = np.mean(u == 0)
    assert abs(dropped - p) < 0.01  # 20 000 draws: std ≈ 0.003
    np.testing.assert_allclose(u[u != 0], 1 / (1 - p))  # survivors scaled by 1/(1 − p)
    assert abs(u.mean() - 1) < 0.02  # so E[u] = z
    v = rng(1).normal(size=z.shape)
    np.testing.assert_array_equal(m.backward(v), v * u)  # the same mask, the same scale


def test_dropout_eval_is_identity_and_draws_nothing():
    m = Dropout(p=0.5).build((8,), rng()).eval()
    state = m.rng.bit_generator.state
    z = rng().normal(size=(3, 8))
    np.testing.assert_array_equal(m.forward(z), z)
    np.testing.assert_array_equal(m.backward(z), z)
    assert m.rng.bit_generator.state == state
    m.train()
    assert np.any(m.forward(z) == 0)


def test_dropout_randomness_comes_from_its_generator():
    z = np.ones((4, 50))
    a, b = Dropout(p=0.5).build((50,), rng()), Dropout(p=0.5).build((50,), rng())
    np.testing.assert_array_equal(a.forward(z), b.forward(z))  # fixed default seed
    a.rng, b.rng = rng(1), rng(2)
    assert not np.array_equal(a.forward(z), b.forward(z))
    first = a.forward(z)
    assert not np.array_equal(first, a.forward(z))  # a new mask every forward
    with pytest.raises(ValidationError):
        Dropout(p=1.0)
    with pytest.raises(ValidationError):
        Dropout(p=-0.1)


# -- Residual ------------------------------------------------------------------------------------

BODY = [{"type": "MM", "out": 4}, {"type": "ReLU"}, {"type": "Linear", "out": 4, "bias": False}]


def test_residual_adds_its_input():
    m = Residual(layers=BODY).build((4,), rng())
    z = rng(1).normal(size=(3, 4))
    body = m.body.forward(z)
    np.testing.assert_allclose(m.forward(z), z + body, rtol=0, atol=0)
    assert [type(c).__name__ for c in m.body.modules] == ["MM", "Sigma", "MM"]


def test_residual_parameter_names_follow_torch():
    chain = Chain([registry.modules.create("MM", out=4), Residual(layers=BODY), Residual(layers=BODY)])
    chain.build((3,), rng())
    names = [k for k, _, _ in chain.parameters()]
    assert names == [
        "0.weight",
        "0.bias",
        "1.body.0.weight",
        "1.body.0.bias",
        "1.body.2.weight",
        "2.body.0.weight",
        "2.body.0.bias",
        "2.body.2.weight",
    ]
    assert chain.param_count == (4 * 3 + 4) + 2 * (4 * 4 + 4 + 4 * 4)


def test_residual_body_must_keep_the_shape():
    with pytest.raises(ShapeError) as e:
        Residual(layers=[{"type": "MM", "out": 5}]).build((4,), rng())
    assert "(4,)" in str(e.value) and "(5,)" in str(e.value)


@pytest.mark.parametrize(
    "layers, field, words",
    [
        ([{"type": "MM", "out": 4}, {"type": "MM", "out": 0}], "layers[1].out", "greater than 0"),
        ([{"type": "ReLU"}, {"type": "Lineer", "out": 2}], "layers[1].type", "did you mean"),
        ([{"out": 3}], "layers[0]", "'type'"),
        (["ReLU"], "layers[0]", "'type'"),
        ([{"type": "MM", "out": 4, "units_": 3}], "layers[0].units_", "xtra"),
        (
            [{"type": "Residual", "layers": [{"type": "LN", "affine": "row"}]}],
            "layers[0].layers[0].affine",
            "scalar",
        ),
    ],
)
def test_nested_errors_say_which_layer(layers, field, words):
    with pytest.raises(ConfigError) as e:
        Residual(layers=layers)
    assert e.value.field == field
    assert words in str(e.value)


def test_residual_train_eval_reaches_the_body():
    m = Residual(layers=[{"type": "Dropout", "p": 0.5}, {"type": "LN"}]).build((6,), rng())
    Chain([m]).eval()
    assert m.body.modules[0].training is False
    z = rng().normal(size=(2, 6))
    np.testing.assert_allclose(m.forward(z), z + m.body.modules[1].forward(z))
