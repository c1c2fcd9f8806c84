"""The flat parameter layout: one buffer per dtype, layers keep their arrays as views, optimisers
over the whole buffer give bit for bit what they give over separate arrays."""

from __future__ import annotations

import numpy as np
import pytest
from test_perf_paths import OPT_SETTINGS

from nncli.config.schema import OptimizerConfig
from nncli.core.chain import Chain
from nncli.core.flat import ALIGN, FlatParameters
from nncli.core.losses import CrossEntropy
from nncli.core.registry import modules
from nncli.training.optimizers import SGD, Adam, make_optimizer


def _chain(dtype=np.float64, seed=0) -> Chain:
    """An MLP with a LayerNorm and a Residual (a nested chain), odd sizes so views need padding."""
    layers = [
        modules.create("MM", out=7),
        modules.create("LN", affine="per_feature"),
        modules.create("ReLU"),
        modules.create("Residual", layers=[{"type": "MM", "out": 7}, {"type": "Tanh"}]),
        modules.create("MM", out=3),
    ]
    return Chain(layers, CrossEntropy()).build((5,), np.random.default_rng(seed), dtype)


def _batch(dtype, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(6, 5)).astype(dtype), rng.integers(0, 3, size=6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_flatten_keeps_values_names_and_shapes_and_makes_aligned_views(dtype):
    chain = _chain(dtype)
    before = chain.state_dict()
    grads_before = {k: g.copy() for k, _, g in chain.parameters()}
    flat = chain.flatten_parameters()
    assert len(flat.segments) == 1
    seg = flat.segments[0]
    after = chain.state_dict()
    assert list(after) == list(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
        assert after[k].dtype == dtype
    for (k, p, g), lo in zip(chain.parameters(), [s[1] for s in seg.spans]):
        np.testing.assert_array_equal(g, grads_before[k])
        assert np.shares_memory(p, seg.params) and np.shares_memory(g, seg.grads), k
        assert p.ctypes.data % ALIGN == 0 and g.ctypes.data % ALIGN == 0, k
        assert p.ctypes.data == seg.params[lo:].ctypes.data
    # the per-layer API writes through to the buffer; the gaps between views hold zeros
    chain.modules[0].params["weight"][...] = 2.0
    lo, hi = seg.spans[0][1:3]
    assert np.all(seg.params[lo:hi] == 2.0)
    used = np.zeros(seg.params.size, bool)
    for _, lo, hi, _ in seg.spans:
        used[lo:hi] = True
    assert not used.all(), "odd sizes should leave alignment gaps"
    assert np.all(seg.params[~used] == 0) and np.all(seg.grads[~used] == 0)


def test_flatten_is_idempotent_and_a_rebuild_drops_the_layout():
    chain = _chain()
    flat = chain.flatten_parameters()
    assert chain.flatten_parameters() is flat and flat.intact()
    chain.build((5,), np.random.default_rng(0), np.float64)
    assert chain.flat is None and not flat.intact()
    assert chain.flatten_parameters() is not flat


def test_zero_grads_zeroes_every_gradient_through_the_flat_buffer():
    chain = _chain()
    chain.flatten_parameters()
    x, y = _batch(np.float64)
    chain.loss_and_grad(x, y)
    assert all(np.any(g != 0) for _, _, g in chain.parameters())
    chain.zero_grads()
    assert all(np.all(g == 0) for _, _, g in chain.parameters())


@pytest.mark.parametrize("flat", [False, True])
def test_gradients_written_after_zero_grads_and_added_after_that(flat):
    """MM writes ∂J/∂θ into gradients it knows are zero (``grads_zeroed``, set by ``zero_grads``)
    and adds it otherwise: a second backward without zeroing gives twice the first."""
    chain = _chain()
    if flat:
        chain.flatten_parameters()
    x, y = _batch(np.float64)
    mms = [m for _, m in chain.named_modules() if type(m).__name__ == "MM"]
    for _, _, g in chain.parameters():
        g.fill(7.0)  # not zero: only zero_grads may let a backward write instead of add
    chain.zero_grads()
    assert all(m.grads_zeroed for m in mms)
    h = chain.forward(x)
    chain.loss.forward(h, y)
    v = chain.loss.backward()
    chain.backward(v)
    assert not any(m.grads_zeroed for m in mms)
    once = {k: g.copy() for k, _, g in chain.parameters()}
    chain.forward(x)
    chain.backward(v)
    assert all(np.array_equal(g, 2 * once[k]) for k, _, g in chain.parameters())
    assert all(np.any(once[k] != 0) for k in once)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_training_with_the_flat_layout_equals_separate_arrays_bit_for_bit(dtype):
    """Same gradients, same loss, same updated weights with and without the flat layout, for
    every optimiser setting; the state_dicts (checkpoint contents) are equal too."""
    x, y = _batch(dtype)
    for setting in OPT_SETTINGS:
        cfg = OptimizerConfig(**setting)
        plain, flat = _chain(dtype), _chain(dtype)
        opt_plain = {"sgd": SGD, "adam": Adam}[cfg.type](list(plain.parameters()), cfg)
        opt_flat = make_optimizer(cfg, flat)
        assert len(opt_flat.segments) == 1 and len(opt_plain.segments) == 8
        for _ in range(4):
            for chain, opt in ((plain, opt_plain), (flat, opt_flat)):
                J, _ = chain.loss_and_grad(x, y)
                opt.step(cfg.lr)
        for (k, p, g), (_, q, h) in zip(plain.parameters(), flat.parameters()):
            np.testing.assert_array_equal(p, q, err_msg=f"{setting} {k}")
            np.testing.assert_array_equal(g, h, err_msg=f"{setting} {k}")
        sa, sb = opt_plain.state_dict(), opt_flat.state_dict()
        assert list(sa) == list(sb)
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        seg = opt_flat.segments[0]
        used = np.zeros(seg.params.size, bool)
        for _, lo, hi, _ in seg.spans:
            used[lo:hi] = True
        for buf in opt_flat.arrays():
            assert np.all(buf[~used] == 0), "the gaps between views must stay zero"


def test_optimizer_state_round_trips_through_its_per_parameter_views():
    x, y = _batch(np.float64)
    cfg = OptimizerConfig(type="adam", lr=0.01, weight_decay=0.01)
    chain = _chain()
    opt = make_optimizer(cfg, chain)
    chain.loss_and_grad(x, y)
    opt.step(cfg.lr)
    state = opt.state_dict()
    other = make_optimizer(cfg, _chain())
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    # the flat buffers hold what was loaded (the views are views, not copies)
    np.testing.assert_array_equal(other._m[0], opt._m[0])


def test_parameters_that_are_not_the_layouts_views_fall_back_to_separate_arrays():
    chain = _chain()
    flat = FlatParameters(chain)
    copies = [(k, p.copy(), g.copy()) for k, p, g in chain.parameters()]
    opt = SGD(copies, OptimizerConfig(type="sgd", lr=0.1), flat)
    assert len(opt.segments) == len(copies)


def test_a_copied_or_unpickled_model_zeroes_its_own_gradients():
    import copy
    import pickle

    chain = _chain()
    chain.flatten_parameters()
    x, y = _batch(np.float64)
    for other in (copy.deepcopy(chain), pickle.loads(pickle.dumps(chain))):
        assert other.flat is None
        other.loss_and_grad(x, y)
        first = {k: g.copy() for k, _, g in other.parameters()}
        other.loss_and_grad(x, y)  # zeroed in between, so the same gradients again, not twice them
        for k, _, g in other.parameters():
            np.testing.assert_array_equal(g, first[k], err_msg=k)
