"""The chain's run plan: a ReLU and the pooling after it run as one module (max pooling first, as
max and ReLU commute), with the declared modules' numbers exactly."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.core import registry
from nncli.core.chain import Chain, cheaper_plan
from nncli.core.layers.relu_pool import ReluPool
from nncli.diagnostics.gradcheck import check_chain


def _chain(layers, input_shape, dtype=np.float64, seed=0):
    mods = [registry.modules.create(s["type"], **{k: v for k, v in s.items() if k != "type"}) for s in layers]
    return Chain(mods, registry.losses.create("cross_entropy")).build(
        input_shape, np.random.default_rng(seed), dtype
    )


def _types(*names):
    return [registry.modules.create(n, **({"kernel": 2} if "Pool" in n else {})) for n in names]


def _plan(*names):
    mods = _types(*names)
    plan = cheaper_plan(mods)
    if plan is None:
        return None
    return [f"{type(m.pool).__name__}+ReLU" if isinstance(m, ReluPool) else str(mods.index(m)) for m in plan]


def test_only_relu_then_pooling_changes():
    assert _plan("ReLU", "MaxPool2D", "ReLU", "MaxPool1D") == ["MaxPool2D+ReLU", "MaxPool1D+ReLU"]
    assert _plan("Flatten", "ReLU", "MaxPool2D") == ["0", "MaxPool2D+ReLU"]
    assert _plan("ReLU", "AvgPool2D", "ReLU", "AvgPool1D") == ["AvgPool2D+ReLU", "AvgPool1D+ReLU"]
    # a module pairs once: ReLU, MaxPool, MaxPool keeps the second pool after the first
    assert _plan("ReLU", "MaxPool2D", "MaxPool2D") == ["MaxPool2D+ReLU", "2"]
    # sigmoid, tanh and leaky ReLU round or saturate distinct inputs onto equal outputs (which
    # would move the argmax), and do not commute with a mean
    for first in ("Sigmoid", "Tanh", "LeakyReLU", "Identity", "MaxPool2D", "AvgPool2D", "Flatten"):
        for second in ("MaxPool2D", "AvgPool2D", "ReLU", "Flatten"):
            assert _plan(first, second) is None


def _declared_order_step(chain, x, y):
    """Output, ∂J/∂x and ∂J/∂θ with the modules run one by one in the declared order."""
    chain.zero_grads()
    u = x
    for m in chain.modules:
        u = m.forward(u)
    chain.loss.forward(u, y)
    v = chain.loss.backward()
    for m in reversed(chain.modules):
        v = m.backward(v)
    return u.copy(), v.copy(), {k: g.copy() for k, _, g in chain.parameters()}


def _chain_step(chain, x, y):
    chain.zero_grads()
    h = chain.forward(x)
    chain.loss.forward(h, y)
    dx = chain.backward(chain.loss.backward())
    return h.copy(), dx.copy(), {k: g.copy() for k, _, g in chain.parameters()}


POOLS = [
    {"kernel": 2},
    {"kernel": 3, "stride": 2, "padding": 1},  # overlapping windows and padding
    {"kernel": 2, "stride": 1},
    {"kernel": [3, 2], "stride": [1, 2], "padding": [1, 0]},
]


def _same_numbers(chain, x, y):
    h, dx, grads = _chain_step(chain, x, y)
    h0, dx0, grads0 = _declared_order_step(chain, x, y)
    assert np.array_equal(h, h0)
    assert np.array_equal(dx, dx0)
    assert all(np.array_equal(grads[k], grads0[k]) for k in grads0)
    assert np.count_nonzero(dx) > 0 and np.count_nonzero(grads["0.weight"]) > 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pool", POOLS, ids=str)
@pytest.mark.parametrize("kind", ["MaxPool2D", "AvgPool2D"])
def test_a_changed_pair_gives_the_declared_orders_numbers(kind, pool, dtype):
    layers = [
        {"type": "Conv2D", "out": 3, "kernel": 3, "padding": 1},
        {"type": "ReLU"},
        {"type": kind, **pool},
        {"type": "Flatten"},
        {"type": "MM", "out": 4},
    ]
    chain = _chain(layers, (2, 6, 6), dtype)
    assert chain.run_plan is not None and len(chain.run_plan) == 4
    rng = np.random.default_rng(3)
    # values on a coarse grid give many equal maxima in a window, positive and negative, and
    # windows whose every value is negative (the ReLU's mask then zeroes the whole window)
    x = np.round(rng.normal(size=(5, 2, 6, 6)) * 2).astype(dtype) / 2
    conv = chain.modules[0]
    conv.params["weight"][...] = np.round(conv.params["weight"] * 8) / 8
    conv.params["bias"][...] = np.array([0.0, -0.5, -50.0], dtype)  # channel 2 all negative
    z = conv.forward(x)
    assert len(np.unique(z[:, :2])) < z[:, :2].size // 4  # many equal values in the first channels
    _same_numbers(chain, x, rng.integers(0, 4, size=5))


@pytest.mark.parametrize("kind", ["MaxPool2D", "AvgPool2D"])
def test_a_changed_pair_over_several_blocks_of_examples(kind):
    """64 × 4 × 36 × 36 elements: the pooling's blocks of examples (2^18 elements) are two."""
    layers = [
        {"type": "Conv2D", "out": 4, "kernel": 3, "padding": 1},
        {"type": "ReLU"},
        {"type": kind, "kernel": 2},
        {"type": "Flatten"},
        {"type": "MM", "out": 3},
    ]
    chain = _chain(layers, (1, 36, 36), np.float32)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(64, 1, 36, 36)).astype(np.float32)
    _same_numbers(chain, x, rng.integers(0, 3, size=64))


@pytest.mark.parametrize("kind", ["MaxPool1D", "AvgPool1D"])
def test_a_changed_conv1d_chain_passes_gradcheck(kind):
    layers = [
        {"type": "Conv1D", "out": 4, "kernel": 3},
        {"type": "ReLU"},
        {"type": kind, "kernel": 2},
        {"type": "Flatten"},
        {"type": "MM", "out": 3},
    ]
    chain = _chain(layers, (2, 9))
    assert chain.run_plan is not None
    rng = np.random.default_rng(4)
    reports = check_chain(chain, rng.normal(size=(3, 2, 9)), rng.integers(0, 3, size=3))
    assert all(r.passed and r.checked > 0 for r in reports), [r for r in reports if not r.passed]


def _relu_pool_mm(kind: str) -> Chain:
    """ReLU, a 1-D pooling of kind ``kind`` (windows of 2), Flatten, MM 2, on inputs (1, 4)."""
    layers = [{"type": "ReLU"}, {"type": kind, "kernel": 2}, {"type": "Flatten"}, {"type": "MM", "out": 2}]
    return _chain(layers, (1, 4))


@pytest.mark.parametrize("kind", ["MaxPool1D", "AvgPool1D"])
def test_hooks_see_the_declared_order(kind):
    chain = _relu_pool_mm(kind)
    assert chain.run_plan is not None
    seen = []
    handle = chain.modules[0].register_forward_hook(lambda m, z, u, seconds: seen.append(z.shape))
    x = np.random.default_rng(0).normal(size=(3, 1, 4))
    hooked = chain.forward(x).copy()
    handle.remove()
    assert seen == [(3, 1, 4)]  # the ReLU's input is the whole array, not the pooled one
    assert np.array_equal(chain.forward(x), hooked)


def test_residual_body_pairs_too():
    res = {
        "type": "Residual",
        "layers": [{"type": "ReLU"}, {"type": "MaxPool1D", "kernel": 3, "stride": 1, "padding": 1}],
    }
    chain = _chain([res, {"type": "Flatten"}, {"type": "MM", "out": 2}], (2, 5))
    body = chain.modules[0].body
    assert body.run_plan is not None and len(body.run_plan) == 1
    assert body.run_plan[0].pool is body.modules[1]
    rng = np.random.default_rng(6)
    reports = check_chain(chain, rng.normal(size=(2, 2, 5)), rng.integers(0, 2, size=2))
    assert all(r.passed and r.checked > 0 for r in reports)


def test_a_module_replaced_after_build_is_run():
    chain = _relu_pool_mm("MaxPool1D")
    x = np.random.default_rng(0).normal(size=(3, 1, 4))
    before = chain.forward(x).copy()
    chain.modules[1] = registry.modules.create("AvgPool1D", kernel=2).build((1, 4), np.random.default_rng(0))
    after = chain.forward(x)
    u = np.maximum(x, 0).reshape(3, 1, 2, 2).mean(axis=3).reshape(3, 2)
    mm = chain.modules[3]
    assert np.allclose(after, u @ mm.params["weight"].T + mm.params["bias"])
    assert not np.allclose(after, before)
