"""The losses by hand: values from their formulas, extreme logits, and the user errors they raise.

Gradient checks and PyTorch comparisons of every registered loss are in test_modules_registry.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from nncli.core import registry
from nncli.core.errors import DataError, ShapeError
from nncli.core.losses import MSE, CrossEntropy, Logistic, Squared


def rng(seed=0):
    return np.random.default_rng(seed)


def test_names():
    assert registry.losses.lookup("CE") is CrossEntropy
    assert registry.losses.lookup("bce") is Logistic
    assert registry.losses.lookup("MSE") is MSE
    assert registry.losses.lookup("MSELoss") is MSE
    assert registry.losses.lookup("l2") is Squared


def test_cross_entropy_value_and_gradient_by_hand():
    h = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    y = np.array([1, 0])
    loss = CrossEntropy()
    J = loss.forward(h, y)
    p = np.exp(h) / np.exp(h).sum(axis=1, keepdims=True)
    assert pytest.approx(-(np.log(p[0, 1]) + np.log(p[1, 0])) / 2, rel=1e-14) == J
    want = p.copy()
    want[[0, 1], y] -= 1
    np.testing.assert_allclose(loss.backward(), want / 2, rtol=1e-14)
    assert loss.metrics(h, y) == {"correct": 1.0}


def test_cross_entropy_extreme_logits():
    h = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
    loss = CrossEntropy()
    assert loss.forward(h, np.array([0, 2])) == 0.0  # right with certainty
    J = loss.forward(h, np.array([1, 0]))  # wrong by 2e4 in each example
    assert pytest.approx(2e4, rel=1e-12) == J
    g = loss.backward()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [[0.5, -0.5, 0.0], [-0.5, 0.0, 0.5]], atol=1e-15)


def test_logistic_value_and_extremes():
    loss = Logistic()
    h = np.array([[2.0], [-1.0]])
    y = np.array([1, 0])
    J = loss.forward(h, y)
    want = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    assert pytest.approx(want, rel=1e-14) == J
    sig = 1 / (1 + np.exp(-h[:, 0]))
    np.testing.assert_allclose(loss.backward()[:, 0], (sig - y) / 2, rtol=1e-14)
    # ±1e4: log(1 + e^h) − y h without overflow
    h = np.array([[1e4], [-1e4], [1e4], [-1e4]])
    assert loss.forward(h, np.array([1, 0, 0, 1])) == pytest.approx(2e4 / 4, rel=1e-12)  # two wrong by 1e4
    g = loss.backward()
    np.testing.assert_allclose(g[:, 0], [0, 0, 0.25, -0.25], atol=1e-15)
    # one logit per example may also come as (N,)
    assert loss.forward(np.array([2.0, -1.0]), y) == pytest.approx(want, rel=1e-14)


def test_squared_has_the_half_and_averages_over_examples_only():
    loss = Squared()
    h = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([[0.0, 0.0], [3.0, 2.0]])
    assert loss.forward(h, y) == pytest.approx(0.5 * (1 + 4 + 0 + 4) / 2)
    np.testing.assert_allclose(loss.backward(), (h - y) / 2)
    assert np.isfinite(loss.forward(np.full((2, 2), 1e4), -y))


def test_mse_is_the_mean_over_every_element_and_twice_squared_for_one_output():
    h = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([[0.0, 0.0], [3.0, 2.0]])
    loss = MSE()
    assert loss.forward(h, y) == pytest.approx((1 + 4 + 0 + 4) / 4)
    np.testing.assert_allclose(loss.backward(), 2 * (h - y) / 4)
    h1, y1 = h[:, :1], rng().normal(size=(2,))
    assert MSE().forward(h1, y1) == pytest.approx(2 * Squared().forward(h1, y1))
    with pytest.raises(DataError, match=r"\(3,\)"):
        MSE().check_targets(rng().normal(size=(4, 2)), (3,))


def test_loss_user_errors():
    with pytest.raises(ShapeError, match="C ≥ 2"):
        CrossEntropy().check_output((1,))
    with pytest.raises(DataError, match=r"\[0, 2\]"):
        CrossEntropy().check_targets(np.array([0, 3]), (3,))
    with pytest.raises(DataError, match="integer"):
        CrossEntropy().check_targets(np.array([0.5, 1.0]), (3,))
    with pytest.raises(ShapeError, match="out: 1"):
        Logistic().check_output((2,))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        Logistic().check_targets(np.array([0, 2]), (1,))
    with pytest.raises(DataError, match=r"\(3,\)"):
        Squared().check_targets(rng().normal(size=(4, 2)), (3,))
    Squared().check_targets(rng().normal(size=(4,)), (1,))  # (N,) targets for one output: fine


def test_loss_does_not_touch_its_inputs():
    h = rng().normal(size=(4, 3))
    y = np.array([0, 2, 1, 1])
    h0 = h.copy()
    for loss in (CrossEntropy(), Squared()):
        loss.forward(h, y if isinstance(loss, CrossEntropy) else np.zeros_like(h))
        loss.backward()
        np.testing.assert_array_equal(h, h0)
