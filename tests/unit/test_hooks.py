"""Chain is a Module (chains nest, a Residual's body is one) and forward/backward hooks."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.core import hooks, registry
from nncli.core.chain import Chain
from nncli.core.hooks import watch
from nncli.core.module import Module
from nncli.diagnostics.gradcheck import check_chain, check_module


def _mm(out):
    return registry.modules.create("MM", out=out)


def nested_chain(seed=0):
    inner = Chain([_mm(4), registry.modules.create("Tanh")])
    res = registry.modules.create("Residual", layers=[{"type": "MM", "out": 4}, {"type": "ReLU"}])
    chain = Chain([_mm(4), inner, res, _mm(3)], registry.losses.create("cross_entropy"))
    return chain.build((5,), np.random.default_rng(seed))


def test_chain_is_a_module_and_nests():
    chain = nested_chain()
    assert isinstance(chain, Module) and isinstance(chain.modules[2].body, Chain)
    names = [n for n, _ in chain.named_modules()]
    assert names == ["0", "1.0", "1.1", "2", "2.body.0", "2.body.1", "3"]
    keys = [k for k, _, _ in chain.parameters()]
    assert keys[:4] == ["0.weight", "0.bias", "1.0.weight", "1.0.bias"]
    assert "2.body.0.weight" in keys
    assert chain.output_shape() == (3,) == chain.output_shape((5,))
    assert chain.param_count == (5 * 4 + 4) + (4 * 4 + 4) + (4 * 4 + 4) + (4 * 3 + 3)
    x = np.random.default_rng(1).normal(size=(6, 5))
    y = np.array([0, 1, 2, 0, 1, 2])
    assert all(r.passed for r in check_chain(chain, x, y))
    # a chain is gradchecked as a module like any other, its sub-modules' parameters included
    reports = check_module(chain.modules[1], np.random.default_rng(2).normal(size=(3, 4)))
    assert {r.tensor for r in reports} == {"input", "0.weight", "0.bias"} and all(r.passed for r in reports)
    chain.eval()
    assert not any(m.training for _, m in chain.named_modules())


def test_hooks_see_every_module_and_go_away():
    chain = nested_chain()
    x = np.random.default_rng(1).normal(size=(6, 5))
    y = np.array([0, 1, 2, 0, 1, 2])
    seen_f, seen_b = [], []
    assert not hooks.any_registered()
    with watch(
        chain,
        on_forward=lambda n, m, z, u, t: seen_f.append((n, z.shape, u.shape, t >= 0)),
        on_backward=lambda n, m, v, dz, t: seen_b.append((n, dz is None)),
    ):
        assert hooks.any_registered()
        chain.loss_and_grad(x, y)
        assert all("forward" not in vars(m) for _, m in chain.named_modules())  # nothing patched
    assert not hooks.any_registered()
    assert [s[0] for s in seen_f] == ["0", "1.0", "1.1", "2.body.0", "2.body.1", "2", "3"]
    assert seen_f[0][1:] == ((6, 5), (6, 4), True)
    # training asks the first trainable module for ∂J/∂θ only: its hook sees dz = None
    assert seen_b == [
        ("3", False),
        ("2.body.1", False),
        ("2.body.0", False),
        ("2", False),
        ("1.1", False),
        ("1.0", False),
        ("0", True),
    ]
    n = len(seen_f)
    chain.loss_and_grad(x, y)
    assert len(seen_f) == n  # removed


def test_hook_handles_and_results_unchanged():
    chain = nested_chain()
    x = np.random.default_rng(1).normal(size=(6, 5))
    chain.eval()
    plain = chain.forward(x)
    calls = []
    h = chain.modules[3].register_forward_hook(lambda m, z, u, t: calls.append(u.copy()))
    np.testing.assert_array_equal(chain.forward(x), plain)
    np.testing.assert_array_equal(calls[0], plain)
    h.remove()
    h.remove()  # a second remove is harmless
    assert not hooks.any_registered()
    with chain.register_forward_hook(lambda m, z, u, t: calls.append("whole")):
        chain(x)  # a hook on the root fires when it is called as a module
    assert calls[-1] == "whole" and not hooks.any_registered()


def test_watch_removes_its_hooks_when_the_block_fails():
    chain = nested_chain()
    with pytest.raises(RuntimeError), watch(chain, on_forward=lambda *a: None):
        raise RuntimeError("boom")
    assert not hooks.any_registered()
