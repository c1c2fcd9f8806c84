"""Optimisers against torch.optim (float64 trajectories), state round trips, schedules and clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nncli.config.schema import OptimizerConfig, ScheduleConfig
from nncli.core.errors import ConfigError, UserError
from nncli.training.optimizers import SGD, Adam, clip_grad_norm, make_optimizer
from nncli.training.schedules import make_schedule

SHAPES = {"0.weight": (3, 4), "0.bias": (3,), "2.weight": (2, 3)}

SETTINGS = [
    {"type": "sgd", "lr": 0.1},
    {"type": "sgd", "lr": 0.05, "weight_decay": 0.01},
    {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    {"type": "sgd", "lr": 0.1, "momentum": 0.8, "weight_decay": 0.03},
    {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"type": "sgd", "lr": 0.1, "momentum": 0.7, "nesterov": True, "weight_decay": 0.05},
    {"type": "adam", "lr": 0.01},
    {"type": "adam", "lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
]


def _problem(seed=0):
    """Parameters, zeroed gradients and a gradient function: ∇ of a quartic, so it changes every step."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    targets = {k: rng.normal(size=s) for k, s in SHAPES.items()}

    def grad_of(k, p):
        d = p - targets[k]
        return d**3 + 0.5 * d

    return params, targets, grad_of


def _ours(cfg, params, grad_of, lrs, opt=None, grads=None):
    """Run ``lrs`` steps; ``opt`` and ``grads`` continue an optimiser that reads those gradient arrays."""
    if grads is None:
        grads = {k: np.zeros_like(p) for k, p in params.items()}
    if opt is None:
        opt = {"sgd": SGD, "adam": Adam}[cfg.type]([(k, params[k], grads[k]) for k in params], cfg)
    for lr in lrs:
        for k, p in params.items():
            grads[k][...] = grad_of(k, p)
        opt.step(lr)
    return opt


def _torch_run(torch, setting, params, grad_of, lrs):
    tp = {k: torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True) for k, p in params.items()}
    kw = {k: v for k, v in setting.items() if k != "type"}
    cls = torch.optim.SGD if setting["type"] == "sgd" else torch.optim.Adam
    opt = cls(list(tp.values()), **kw)
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        for k, t in tp.items():
            t.grad = torch.from_numpy(grad_of(k, t.detach().numpy()))
        opt.step()
    return {k: t.detach().numpy() for k, t in tp.items()}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_trajectory_matches_torch(setting):
    torch = pytest.importorskip("torch", reason="the optimisers are checked against torch.optim")
    params, _, grad_of = _problem()
    lrs = [setting["lr"] * (1 - 0.1 * i) for i in range(8)]  # a changing lr, as schedules give
    want = _torch_run(torch, setting, params, grad_of, lrs)
    _ours(OptimizerConfig(**setting), params, grad_of, lrs)
    for k in params:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)
    # and the parameters did move: a no-op optimiser must not pass
    start, _, _ = _problem()
    assert all(np.abs(params[k] - start[k]).max() > 1e-3 for k in params)


@pytest.mark.parametrize("setting", SETTINGS[2:], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_state_dict_round_trip_continues_identically(setting):
    cfg = OptimizerConfig(**setting)
    lrs = [cfg.lr] * 6
    # uninterrupted: 6 steps
    p_full, _, grad_of = _problem(1)
    _ours(cfg, p_full, grad_of, lrs)
    # interrupted after 3: save parameters and optimiser state, rebuild both, continue
    p_half, _, _ = _problem(1)
    opt = _ours(cfg, p_half, grad_of, lrs[:3])
    state = {k: v.copy() for k, v in opt.state_dict().items()}
    assert state[f"{cfg.type}.step"] == 3
    assert all(isinstance(v, np.ndarray) for v in state.values())
    if cfg.type == "sgd":
        assert set(state) == {"sgd.step"} | {f"momentum.{k}" for k in SHAPES}
    p_resumed = {k: v.copy() for k, v in p_half.items()}
    grads = {k: np.zeros_like(p) for k, p in p_resumed.items()}
    fresh = type(opt)([(k, p_resumed[k], grads[k]) for k in p_resumed], cfg)
    fresh.load_state_dict(state)
    _ours(cfg, p_resumed, grad_of, lrs[3:], opt=fresh, grads=grads)
    for k in p_full:
        np.testing.assert_array_equal(p_resumed[k], p_full[k])


def test_load_state_dict_refuses_a_mismatch():
    cfg = OptimizerConfig(type="adam")
    params, _, grad_of = _problem()
    opt = _ours(cfg, params, grad_of, [0.01])
    state = opt.state_dict()
    del state["adam.m.0.bias"]
    with pytest.raises(UserError, match=r"missing \['adam.m.0.bias'\]"):
        opt.load_state_dict(state)
    state = opt.state_dict()
    state["adam.v.0.bias"] = np.zeros(5)
    with pytest.raises(UserError, match="shape"):
        opt.load_state_dict(state)


def test_gradients_are_not_modified_and_steps_do_not_reallocate():
    cfg = OptimizerConfig(type="sgd", momentum=0.9, nesterov=True, weight_decay=0.1)
    params, _, grad_of = _problem()
    grads = {k: grad_of(k, p) for k, p in params.items()}
    before = {k: g.copy() for k, g in grads.items()}
    ids = {k: id(p) for k, p in params.items()}
    opt = SGD([(k, params[k], grads[k]) for k in params], cfg)
    buffers = [id(b) for b in opt.momentum]
    opt.step(0.1)
    opt.step(0.1)
    for k in grads:
        np.testing.assert_array_equal(grads[k], before[k])
        assert id(params[k]) == ids[k]
    assert [id(b) for b in opt.momentum] == buffers


def test_float32_parameters_stay_float32():
    p = np.ones(4, dtype=np.float32)
    g = np.full(4, 0.5, dtype=np.float32)
    opt = Adam([("w", p, g)], OptimizerConfig(type="adam", lr=0.1, weight_decay=0.01))
    opt.step(0.1)
    assert p.dtype == np.float32 and opt.m[0].dtype == np.float32
    assert np.all(p < 1)


def test_make_optimizer_uses_every_chain_parameter():
    class FakeChain:
        def parameters(self):
            yield "0.weight", np.zeros((2, 2)), np.ones((2, 2))
            yield "0.bias", np.zeros(2), np.ones(2)

    opt = make_optimizer(OptimizerConfig(type="adam"), FakeChain())
    assert isinstance(opt, Adam) and opt.names == ["0.weight", "0.bias"]


# -- clipping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    torch = pytest.importorskip("torch", reason="clipping is checked against torch.nn.utils")
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=s) for s in SHAPES.values()]
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g.copy())
    want_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))
    norm = clip_grad_norm(grads, max_norm)
    assert norm == pytest.approx(want_norm, rel=1e-12)
    for t, g in zip(tensors, grads):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)
    after = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert after <= max_norm + 1e-9
    assert (after < norm) == (norm > max_norm)


def test_clip_grad_norm_leaves_nonfinite_gradients_alone():
    grads = [np.array([1.0, np.inf]), np.array([2.0])]
    assert clip_grad_norm(grads, 1.0) == math.inf
    assert grads[0][0] == 1.0 and grads[1][0] == 2.0


# -- schedules ------------------------------------------------------------------------------------


def test_constant_and_warmup():
    lr = make_schedule(ScheduleConfig(type="constant", warmup_steps=4), 0.1, 100)
    assert [lr(t) for t in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert make_schedule(ScheduleConfig(), 0.3, 10)(9) == 0.3


def test_step_schedule():
    lr = make_schedule(ScheduleConfig(type="step", step_size=10, gamma=0.5), 0.8, 100)
    assert [lr(t) for t in (0, 9, 10, 19, 20, 35)] == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.1])
    warm = make_schedule(ScheduleConfig(type="step", step_size=10, gamma=0.5, warmup_steps=2), 0.8, 100)
    assert [warm(t) for t in (0, 1, 2, 11, 12)] == pytest.approx([0.4, 0.8, 0.8, 0.8, 0.4])


def test_cosine_schedule():
    lr = make_schedule(ScheduleConfig(type="cosine", min_lr=0.01), 0.1, 100)
    assert lr(0) == pytest.approx(0.1)
    assert lr(50) == pytest.approx(0.055)  # halfway: the mean of the two ends
    assert lr(100) == pytest.approx(0.01) and lr(500) == pytest.approx(0.01)
    values = [lr(t) for t in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    warm = make_schedule(ScheduleConfig(type="cosine", warmup_steps=10), 1.0, 110)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0) and warm(10) == pytest.approx(1.0)
    assert warm(60) == pytest.approx(0.5) and warm(110) == pytest.approx(0.0, abs=1e-15)


def test_cosine_refuses_min_lr_above_lr():
    with pytest.raises(ConfigError, match="min_lr"):
        make_schedule(ScheduleConfig(type="cosine", min_lr=0.5), 0.1, 10)
