"""A module of your own, checked and trained by nncli's commands like a built-in.

    nncli gradcheck --code examples/custom_module.py -m ScaledCube
    nncli inspect   --code examples/custom_module.py my_config.yaml --trace
    nncli train     --code examples/custom_module.py my_config.yaml

with ``{type: ScaledCube}`` (or ``{type: ScaledCube, init: 0.5}``) among the config's layers.
``--code`` imports this file before the config is read (spaCy's convention); an installed package
adds its modules through the ``nncli.modules`` entry-point group instead.

The module is the notes' recipe: a forward that keeps what backward needs, and a backward B[M, z](v)
that returns ∂J/∂z and ADDS ∂J/∂θ (eq. 7.57).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from nncli.core.module import HParams, Module
from nncli.core.registry import modules


class ScaledCubeConfig(HParams):
    init: float = Field(0.1, description="initial value of every a_i")


@modules.register("ScaledCube")
class ScaledCube(Module):
    """u = z + a ⊙ z³ elementwise, a learnable per feature (``weight``, shaped like one example).

    Backward: ∂J/∂z = v ⊙ (1 + 3 a ⊙ z²),  ∂J/∂a = Σₙ v ⊙ z³.
    """

    def init_params(self, rng):
        return {"weight": np.full(self.input_shape, self.cfg.init)}

    Config = ScaledCubeConfig

    def forward(self, z):
        self._z = z
        return z + self.params["weight"] * z**3

    def backward(self, v):
        z = self._z
        self.grads["weight"] += np.sum(v * z**3, axis=0)
        return v * (1 + 3 * self.params["weight"] * z**2)

    def describe(self):
        d = int(np.prod(self.input_shape))
        return {"formula": f"D = {d}", "macs_forward": 3 * d, "macs_backward": 5 * d, "saved": d}

    @classmethod
    def examples(cls):
        return [({}, (4,)), ({"init": -0.3}, (2, 3))]

    def trace_equations(self):
        return ("u = z + a ⊙ z³", "∂J/∂z = v ⊙ (1 + 3a ⊙ z²), ∂J/∂a = Σ v ⊙ z³")
