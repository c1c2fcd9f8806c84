"""Optimisers, schedules and data sources are registries, like layers: a registered name works from a
config at once, case-insensitively, and an unknown one is refused with the registered names."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.config.load import config_from_dict
from nncli.config.schema import DataConfig, OptimizerConfig, ScheduleConfig
from nncli.core.errors import ConfigError, UserError
from nncli.core.registry import data_sources, optimizers, schedules
from nncli.training.data import load_dataset
from nncli.training.optimizers import SGD, make_optimizer
from nncli.training.schedules import make_schedule


@pytest.fixture
def scratch_registries():
    """Registrations made by a test are forgotten after it."""
    saved = [(r, dict(r._by_key), dict(r._canonical)) for r in (optimizers, schedules, data_sources)]
    yield
    for r, by_key, canonical in saved:
        r._by_key, r._canonical = by_key, canonical


def test_names_are_case_insensitive_and_stored_canonical():
    assert OptimizerConfig(type="Adam").type == "adam"
    assert ScheduleConfig(type="COSINE").type == "cosine"
    ds = load_dataset(DataConfig(source="Spirals", n_samples=30), input_shape=(2,), loss=None, seed=0)
    assert ds.info["source"] == "spirals"


@pytest.mark.parametrize(
    "section, value, want",
    [
        (
            "optimizer",
            "adamw",
            "expected one of 'sgd' or 'adam', got the string 'adamw' (did you mean 'adam'?)",
        ),
        ("schedule", 3, "expected one of 'constant', 'step' or 'cosine', got 3"),
    ],
)
def test_unknown_names_list_the_registered_ones(section, value, want):
    with pytest.raises(UserError) as err:
        config_from_dict(
            {"model": {"input_shape": [2], "layers": [{"type": "MM", "out": 2}]}, section: {"type": value}}
        )
    assert f"{section}.type: {want}" in str(err.value)


def test_a_registered_optimizer_is_usable_from_a_config(scratch_registries):
    @optimizers.register("halved_sgd", "hsgd")
    class HalvedSGD(SGD):
        kind = "halved_sgd"

        def step(self, lr):
            super().step(lr / 2)

    cfg = OptimizerConfig(type="HSGD", lr=1.0)
    assert cfg.type == "halved_sgd"
    p, g = np.ones(3), np.ones(3)

    class OneParam:
        def parameters(self):
            yield "w", p, g

    opt = make_optimizer(cfg, OneParam())
    opt.step(cfg.lr)
    assert isinstance(opt, HalvedSGD) and np.allclose(p, 0.5)
    with pytest.raises(ValueError, match="'sgd', 'adam' or 'halved_sgd'"):
        OptimizerConfig(type="nope")


def test_a_registered_schedule_is_usable_from_a_config(scratch_registries):
    @schedules.register("halving")
    def halving(cfg, base_lr, span):
        return lambda s: base_lr / 2**s

    lr = make_schedule(ScheduleConfig(type="Halving", warmup_steps=1), 0.8, 10)
    assert [lr(t) for t in range(4)] == [0.8, 0.8, 0.4, 0.2]


def test_a_registered_data_source_is_usable_from_a_config(scratch_registries):
    @data_sources.register("ramp")
    def ramp(cfg, seed):
        x = np.arange(cfg.n_samples, dtype=np.float64)[:, None]
        return {"x": x, "y": 2 * x}, {"kind": "synthetic"}

    ds = load_dataset(
        DataConfig(source="RAMP", n_samples=20, val_split=0.0, standardize=False),
        input_shape=(1,),
        loss=None,
        seed=0,
    )
    assert ds.info["source"] == "ramp" and len(ds.train) == 20
    assert np.array_equal(ds.train.y, 2 * ds.train.x)
    with pytest.raises(ConfigError, match="did you mean 'ramp'"):
        load_dataset(DataConfig(source="rampp"), input_shape=(1,), loss=None, seed=0)
