"""Flatten and Reshape: change the per-example shape, keep the numbers (no parameters)."""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, field_validator

from nncli.core.errors import ShapeError
from nncli.core.module import HParams, Module
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec


@modules.register("Flatten")
class Flatten(Module):
    """u = z reshaped to one feature axis, e.g. Conv1D's (C, L) into MM's (C·L,).

    Shape: z (N, *s) → u (N, prod s). Backward reshapes v back to (N, *s). As ``torch.nn.Flatten()``.
    """

    batch_split = "yes"

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, z):
        self._shape = z.shape
        return z.reshape(z.shape[0], -1)

    def backward(self, v):
        return v.reshape(self._shape)

    @classmethod
    def examples(cls):
        return [({}, (2, 3)), ({}, (4,)), ({}, (2, 1, 3))]

    def describe(self):
        return {"formula": "", "macs_forward": 0, "macs_backward": 0, "saved": 0}

    def trace_equations(self):
        return ("u = reshape(z, (N, ∏ shape))", "∂J/∂z = reshape(v, z.shape)")

    def torch_spec(self):
        return TorchSpec("Flatten")

    def to_onnx(self, graph, x, name):
        return graph.node("Flatten", [x], name, axis=1)


class ReshapeConfig(HParams):
    shape: list[int] = Field(min_length=1, description="per-example sizes; one of them may be -1")

    @field_validator("shape")
    @classmethod
    def _sizes(cls, v):
        if any(s == 0 or s < -1 for s in v):
            raise ValueError(f"sizes must be positive integers or -1, got {v}")
        if v.count(-1) > 1:
            raise ValueError(f"at most one size may be -1, got {v}")
        return v


@modules.register("Reshape", "Unflatten", "View")
class Reshape(Module):
    """u = z with each example reshaped to ``shape`` (row-major order, as numpy and PyTorch).

    Shape: z (N, *s) → u (N, *shape), prod shape = prod s; a −1 in ``shape`` takes the remaining size.
    As ``torch.nn.Unflatten(1, shape)`` after a Flatten.
    """

    Config = ReshapeConfig
    batch_split = "yes"

    def output_shape(self, input_shape):
        have = math.prod(input_shape)
        want = list(self.cfg.shape)
        known = math.prod(s for s in want if s != -1)
        if -1 in want:
            if have % known:
                raise ShapeError(
                    f"Reshape cannot fit {have} values per example (input {tuple(input_shape)}) "
                    f"into {want}: {have} is not a multiple of {known}"
                )
            want[want.index(-1)] = have // known
        elif known != have:
            raise ShapeError(
                f"Reshape to {want} needs {known} values per example, but the input "
                f"{tuple(input_shape)} has {have}"
            )
        return tuple(want)

    def forward(self, z):
        self._shape = z.shape
        return z.reshape(z.shape[0], *self.output_shape(z.shape[1:]))

    def backward(self, v):
        return v.reshape(self._shape)

    @classmethod
    def examples(cls):
        return [({"shape": [2, 3]}, (6,)), ({"shape": [-1, 2]}, (3, 2)), ({"shape": [4]}, (2, 2))]

    def describe(self):
        return {"formula": "", "macs_forward": 0, "macs_backward": 0, "saved": 0}

    def trace_equations(self):
        return ("u = reshape(z, (N, *shape))", "∂J/∂z = reshape(v, z.shape)")

    def torch_spec(self):
        unflatten = TorchSpec("Unflatten", (1, tuple(self.output_shape(self.input_shape))))
        if len(self.input_shape) == 1:
            return unflatten
        return TorchSpec("Sequential", (TorchSpec("Flatten"), unflatten))  # no parameters: keys unchanged

    def to_onnx(self, graph, x, name):
        """Reshape to (-1, *shape)."""
        target = [-1] + [int(s) for s in self.output_shape(self.input_shape)]
        return graph.node("Reshape", [x, graph.const(f"{name}/shape", target, dtype=np.int64)], name)
