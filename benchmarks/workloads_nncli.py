"""The benchmark workloads written with nncli (float32, batch-first, channels-first).

Each ``make_<name>()`` returns a ``Workload`` whose ``step()`` is one unit of timed work; a workload
whose module type is not registered raises ``Unavailable``. This module never imports torch.
"""

from __future__ import annotations

import numpy as np
from harness import Unavailable, Workload
from specs import SPECS, digits_spec, optimizer_slots

DTYPE = np.float32


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _module(type_name: str, **hp):
    from nncli.core.errors import ConfigError
    from nncli.core.registry import modules

    try:
        return modules.create(type_name, **hp)
    except ConfigError as exc:
        raise Unavailable(f"nncli has no {type_name} yet ({exc})") from None


def _chain(layers: list[dict], input_shape, loss: str | None = "cross_entropy"):
    from nncli.core.chain import Chain
    from nncli.core.registry import losses

    mods = []
    for spec in layers:
        spec = dict(spec)
        mods.append(_module(spec.pop("type"), **spec))
    return Chain(mods, losses.create(loss) if loss else None).build(tuple(input_shape), _rng(1), DTYPE)


def _optimizer(chain, opt: dict):
    from nncli.config.schema import OptimizerConfig
    from nncli.training.optimizers import make_optimizer

    return make_optimizer(OptimizerConfig(**opt), chain)


def _train_workload(
    layers, input_shape, batch: int, opt: dict, classes: int = 10, note: str = ""
) -> Workload:
    chain = _chain(layers, input_shape)
    optim = _optimizer(chain, opt)
    lr = opt["lr"]
    rng = _rng(2)
    x = rng.standard_normal((batch, *input_shape), dtype=DTYPE)
    y = rng.integers(0, classes, size=batch)

    def step():
        # forward, loss, backward (Chain.loss_and_grad zeroes the gradients first), update
        chain.loss_and_grad(x, y)
        optim.step(lr)

    return Workload(step, note=note, model=chain, batch=batch, optimizer_slots=optimizer_slots(opt))


def _fwd_bwd_workload(layer: dict, input_shape, batch: int, note: str = "") -> Workload:
    chain = _chain([layer], input_shape, loss=None)
    m = chain.modules[0]
    rng = _rng(2)
    x = rng.standard_normal((batch, *input_shape), dtype=DTYPE)
    g = rng.standard_normal((batch, *m.output_shape(tuple(input_shape))), dtype=DTYPE)

    def step():
        m.zero_grads()
        m.forward(x)
        m.backward(g)  # dJ/dz and dJ/dθ, as torch's backward with x.requires_grad

    return Workload(step, note=note, model=chain, batch=batch)


def make(name: str) -> Workload:
    s = SPECS[name] if name != "digits_cnn" else digits_spec()
    if s["kind"] == "train":
        return _train_workload(
            s["layers"], s["input_shape"], s["batch"], s["optimizer"], note=s.get("note", "")
        )
    return _fwd_bwd_workload(s["layers"][0], s["input_shape"], s["batch"], note=s.get("note", ""))
