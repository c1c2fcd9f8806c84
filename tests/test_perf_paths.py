"""The fast paths keep exactness: sliced optimiser updates, buffer-reusing LN, threaded row chunks.

Each test compares a fast path with the plain computation it replaces (bit for bit where the arithmetic
is the same) or bounds the memory it may use, so that a later speed change cannot quietly alter results.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nncli import optim
from nncli.optim import SGD, Adam
from nncli.schema import OptimizerConfig

OPT_SETTINGS = [
    {"type": "sgd", "lr": 0.1},
    {"type": "sgd", "lr": 0.05, "weight_decay": 0.01},
    {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    {"type": "sgd", "lr": 0.1, "momentum": 0.7, "nesterov": True, "weight_decay": 0.05},
    {"type": "adam", "lr": 0.01},
    {"type": "adam", "lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
]


def _run_optimizer(setting, chunk, monkeypatch, dtype=np.float64, steps=4):
    """Parameters (one larger than ``chunk``, one scalar) after ``steps`` updates with slices of ``chunk``."""
    monkeypatch.setattr(optim, "CHUNK", chunk)
    rng = np.random.default_rng(3)
    params = {"w": rng.normal(size=(7, 5)).astype(dtype), "b": rng.normal(size=(5,)).astype(dtype),
              "s": np.array(0.5, dtype=dtype)}
    grads = {k: np.zeros_like(p) for k, p in params.items()}
    cfg = OptimizerConfig(**setting)
    opt = {"sgd": SGD, "adam": Adam}[cfg.type]([(k, params[k], grads[k]) for k in params], cfg)
    for t in range(steps):
        for k, p in params.items():
            grads[k][...] = np.sin(3 * p + t)        # changes with θ and t, so every step differs
        opt.step(cfg.lr)
    return params


@pytest.mark.parametrize("setting", OPT_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sliced_optimizer_steps_equal_whole_array_steps_bit_for_bit(setting, dtype, monkeypatch):
    whole = _run_optimizer(setting, 10**6, monkeypatch, dtype)
    sliced = _run_optimizer(setting, 4, monkeypatch, dtype)          # 35 elements → 9 slices, last short
    start = _run_optimizer(setting, 4, monkeypatch, dtype, steps=0)
    for k in whole:
        np.testing.assert_array_equal(sliced[k], whole[k], err_msg=k)
        assert sliced[k].dtype == dtype
        assert np.abs(sliced[k] - start[k]).max() > 1e-4          # the update did happen


@pytest.mark.parametrize("setting", OPT_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_optimizer_memory_is_its_state_plus_two_slices(setting):
    """Building the optimiser and stepping it costs its state (momentum, or Adam's m and v) and two
    scratch slices, never a parameter-sized temporary (measured MLP step: peak/theory 1.60 → 1.27)."""
    n = 4 * optim.CHUNK                                  # each parameter is four slices long
    rng = np.random.default_rng(0)
    params = [("a", rng.normal(size=n), rng.normal(size=n)), ("b", rng.normal(size=n), rng.normal(size=n))]
    cfg = OptimizerConfig(**setting)
    slots = 2 if cfg.type == "adam" else int(cfg.momentum > 0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        opt = {"sgd": SGD, "adam": Adam}[cfg.type](params, cfg)
        for _ in range(3):
            opt.step(0.1)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    extra = peak - slots * 2 * 8 * n
    assert 0 < extra <= 2 * 8 * optim.CHUNK + 20_000, (
        f"beyond its state the optimiser used {extra} bytes; one parameter is {8 * n}")


def test_scratch_is_no_larger_than_the_largest_parameter():
    p, g = np.zeros(3), np.zeros(3)
    opt = SGD([("w", p, g)], OptimizerConfig(type="sgd", lr=0.1, weight_decay=0.1))
    assert all(a.size == 3 and b.size == 3 for a, b in opt._scratch.values())


def test_non_contiguous_parameters_are_refused():
    p = np.zeros((4, 4)).T
    with pytest.raises(ValueError, match="contiguous"):
        SGD([("w", p, np.zeros((4, 4)))], OptimizerConfig(type="sgd", lr=0.1))
