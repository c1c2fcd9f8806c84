"""Dropout: zero each value with probability p while training (inverted dropout)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from nncli.core.module import HParams, Module
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec


class DropoutConfig(HParams):
    p: float = Field(0.5, ge=0.0, lt=1.0, description="probability of zeroing each value")


@modules.register("Dropout")
class Dropout(Module):
    """Training: u = z ⊙ m / (1 − p) with m_i ~ Bernoulli(1 − p); eval: u = z. Any input shape.

    Scaling by 1/(1 − p) while training keeps E[u] = z, so nothing changes at eval time.
    Backward: ∂J/∂z = v ⊙ m / (1 − p) with the mask of the last forward.

    The mask comes from ``self.rng`` (a ``numpy.random.Generator``). The builder assigns one per run;
    the default is fixed-seed so a standalone module is reproducible. Gradient checks replay the
    generator's state before every forward, so keep the name ``rng``.
    """

    Config = DropoutConfig

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.rng: np.random.Generator = np.random.default_rng(0)
        self._mask = None

    def forward(self, z):
        p = self.cfg.p
        if not self.training or p == 0.0:
            self._mask = None
            return z
        dt = np.dtype(z.dtype if z.dtype in (np.float32, np.float64) else np.float64)
        keep = self.rng.random(z.shape, dtype=dt) >= p
        # the mask already holds the 1/(1−p) scale, so backward is one multiply; built as 1.0/0.0
        # times the scale, not with np.where, whose loop branches on every (random) element
        self._mask = np.empty(z.shape, dt)
        np.copyto(self._mask, keep)
        self._mask *= dt.type(1.0 / (1.0 - p))
        return z * self._mask

    def backward(self, v):
        if self._mask is None:
            return v
        return v * self._mask

    def describe(self):
        d = int(np.prod(self.input_shape))
        return {"formula": "", "macs_forward": d, "macs_backward": d, "saved": d}

    @classmethod
    def examples(cls):
        return [({"p": 0.5}, (6,)), ({"p": 0.2}, (2, 3)), ({"p": 0.0}, (4,))]

    def trace_equations(self):
        return ("u = m ⊙ z / (1 − p), m ~ Bernoulli(1 − p)  (training)", "∂J/∂z = m ⊙ v / (1 − p)")

    def torch_spec(self):
        return TorchSpec("Dropout", (self.cfg.p,))

    def to_onnx(self, graph, x, name):
        return x  # the identity at inference
