"""Residual: u = z + body(z), the body a chain of layers given as nested layer dicts."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, ValidationError

from nncli.core.chain import Chain
from nncli.core.errors import ConfigError, ShapeError
from nncli.core.module import HParams, Module
from nncli.core.registry import modules
from nncli.core.torch_spec import helper_class


class ResidualConfig(HParams):
    # entries are checked one by one in Residual.__init__, so errors can name layers[i]
    layers: list[Any] = Field(min_length=1, description="the body: layer dicts {type: ..., ...}")


def _create(i: int, spec: Any) -> Module:
    """Create nested layer ``i``; errors name it as ``layers[i].<key>`` (the builder adds the outer path)."""
    where = f"layers[{i}]"
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"expected a layer dict with a 'type' key, got {spec!r}", field=where)
    rest = {k: v for k, v in spec.items() if k != "type"}
    try:
        return modules.create(spec["type"], **rest)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        got = f", got {err['input']!r}" if "input" in err and err.get("type") != "missing" else ""
        raise ConfigError(f"{err['msg']}{got}", field=f"{where}.{loc}" if loc else where) from None
    except ConfigError as e:
        raise ConfigError(
            e.message, field=f"{where}.{e.field}" if e.field else f"{where}.type", place=e.place
        ) from None


@modules.register("Residual", "Skip", "ResidualBlock")
class Residual(Module):
    """u = z + body(z): a skip connection around a Chain of modules (the body).

    Shape: z (N, *s) → u (N, *s); the body must map s to s. Backward: ∂J/∂z = v + B[body, z](v),
    the identity path plus the body's backward; the body's modules accumulate their own ∂J/∂θ.
    Parameters live in the body: their names are ``<i>.body.<j>.weight``, as for a torch module with
    a ``body`` nn.Sequential.
    """

    Config = ResidualConfig
    batch_split = "yes"  # z + body(z) per example; the body's modules say for themselves

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.body = Chain([_create(i, spec) for i, spec in enumerate(self.cfg.layers)])

    def children(self):
        return [("body", self.body)]

    def output_shape(self, input_shape):
        shape = self.body.output_shape(input_shape)
        if shape != tuple(input_shape):
            raise ShapeError(
                f"Residual body must keep the shape to add it to its input: input "
                f"{tuple(input_shape)}, body output {shape}"
            )
        return shape

    def build(self, input_shape, rng, dtype=np.float64):
        self.output_shape(input_shape)
        super().build(input_shape, rng, dtype)
        self.body.build(self.input_shape, rng, dtype)
        return self

    def forward(self, z):
        return z + self.body(z)

    def backward(self, v):
        return v + self.body.call_backward(v)

    def describe(self):
        body = self.body.describe()
        d = int(np.prod(self.input_shape))
        return {
            "formula": "body: " + body["formula"],
            "macs_forward": body["macs_forward"] + d,  # + d for the skip add
            "macs_backward": body["macs_backward"] + d,
            "saved": body["saved"],
        }

    @classmethod
    def examples(cls):
        return [
            ({"layers": [{"type": "MM", "out": 4}, {"type": "Tanh"}]}, (4,)),
            (
                {
                    "layers": [
                        {"type": "LN"},
                        {"type": "MM", "out": 3},
                        {"type": "GELU"},
                        {"type": "MM", "out": 3, "bias": False},
                    ]
                },
                (3,),
            ),
            (
                {
                    "layers": [
                        {"type": "Flatten"},
                        {"type": "Reshape", "shape": [2, 3]},
                        {"type": "LN", "affine": "per_feature"},
                    ]
                },
                (2, 3),
            ),
        ]

    # -- what trace and export ask -------------------------------------------------------------
    def trace_equations(self):
        return ("u = z + body(z)", "∂J/∂z = v + B[body, z](v)")

    def to_torch(self):
        return helper_class("Residual", TORCH_RESIDUAL)(self.body.to_torch())

    def torch_source(self, writer):
        writer.helper("Residual", TORCH_RESIDUAL)
        return f"Residual({self.body.torch_source(writer)})"

    def to_onnx(self, graph, x, name):
        """The body's subgraph, then Add(z, body(z))."""
        return graph.node("Add", [x, self.body.to_onnx(graph, x, f"{name}.body")], name)


#: u = z + body(z) for torch, with the body under the attribute ``body`` (so parameter names match):
#: the class an exported file defines and the cross-checks run
TORCH_RESIDUAL = '''
class Residual(nn.Module):
    """u = z + body(z)."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)
'''
