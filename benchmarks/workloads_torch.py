"""The same workloads in PyTorch (float32, same shapes, same batch), imported only by torch workers.

Layer specs are translated into ``torch.nn`` modules; a type this file does not know (say a layer a
config uses that is newer than the benchmark) falls back to the nncli module's own ``to_torch()``.
"""

from __future__ import annotations

import numpy as np
import torch
from harness import Workload
from specs import SPECS, digits_spec

DTYPE = torch.float32


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def _conv(cls, spec, c_in):
    return cls(
        c_in,
        spec["out"],
        spec["kernel"],
        stride=spec.get("stride", 1),
        padding=spec.get("padding", (spec["kernel"] - 1) // 2),  # nncli's default: ℓ each side
        dilation=spec.get("dilation", 1),
        bias=spec.get("bias", True),
    )


def _layer(spec: dict, shape: tuple[int, ...]):
    """(torch module, per-example output shape) for one nncli layer spec at per-example ``shape``."""
    t = _key(spec["type"])
    if t in ("mm", "linear", "dense", "fc"):
        return torch.nn.Linear(shape[0], spec["out"], bias=spec.get("bias", True)), (spec["out"],)
    if t in ("relu",) or (t in ("sigma", "σ") and spec.get("fn", "relu") == "relu"):
        return torch.nn.ReLU(), shape
    if t == "flatten":
        return torch.nn.Flatten(), (int(np.prod(shape)),)
    if t in ("conv1d", "conv2d"):
        cls = torch.nn.Conv1d if t == "conv1d" else torch.nn.Conv2d
        layer = _conv(cls, spec, shape[0])
        with torch.no_grad():
            out = layer(torch.zeros((1, *shape))).shape[1:]
        return layer, tuple(out)
    if t in ("ln", "layernorm", "layer_norm") and spec.get("affine") == "per_feature":
        return torch.nn.LayerNorm(list(shape), eps=spec.get("eps", 1e-5)), shape
    return _via_nncli(spec, shape)


def _via_nncli(spec: dict, shape):
    from nncli.core.registry import modules

    spec = dict(spec)
    m = modules.create(spec.pop("type"), **spec).build(tuple(shape), np.random.default_rng(1), np.float32)
    return m.to_torch(), m.output_shape(tuple(shape))


def _model(layers: list[dict], input_shape) -> torch.nn.Sequential:
    shape, mods = tuple(input_shape), []
    for spec in layers:
        m, shape = _layer(spec, shape)
        mods.append(m)
    return torch.nn.Sequential(*mods).to(DTYPE)


def _data(shape, classes: int | None = None, out_shape=None):
    # the same generator stream as the nncli worker, so both see identical inputs
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
    if classes is not None:
        return x, torch.from_numpy(rng.integers(0, classes, size=shape[0]))
    return x, torch.from_numpy(rng.standard_normal((shape[0], *out_shape), dtype=np.float32))


def make_optimizer(params, opt: dict):
    """torch.optim.SGD / Adam with the same settings as an nncli optimizer config dict."""
    o = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "betas": (0.9, 0.999), "eps": 1e-8, **opt}
    # on CPU tensors PyTorch's default is the per-parameter loop (no foreach), as nncli's optimiser
    if o["type"] == "adam":
        return torch.optim.Adam(
            params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"]
        )
    return torch.optim.SGD(
        params, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"], weight_decay=o["weight_decay"]
    )


def _train_workload(layers, input_shape, batch, opt: dict, note="") -> Workload:
    model = _model(layers, input_shape)
    x, y = _data((batch, *input_shape), classes=10)
    optim = make_optimizer(model.parameters(), opt)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optim.zero_grad()
        loss_fn(model(x), y).backward()
        optim.step()

    return Workload(step, note=note)


def _fwd_bwd_workload(layer: dict, input_shape, batch, note="") -> Workload:
    m = _model([layer], input_shape)
    with torch.no_grad():
        out_shape = tuple(m(torch.zeros((1, *input_shape))).shape[1:])
    x, g = _data((batch, *input_shape), out_shape=out_shape)
    x.requires_grad_(True)

    def step():
        m.zero_grad()
        x.grad = None
        m(x).backward(g)  # dJ/dx and dJ/dθ, as nncli's backward

    return Workload(step, note=note)


def make(name: str) -> Workload:
    s = SPECS[name] if name != "digits_cnn" else digits_spec()
    if s["kind"] == "train":
        return _train_workload(
            s["layers"], s["input_shape"], s["batch"], s["optimizer"], note=s.get("note", "")
        )
    return _fwd_bwd_workload(s["layers"][0], s["input_shape"], s["batch"], note=s.get("note", ""))
