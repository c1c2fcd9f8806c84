"""LN: layer normalisation over all features of one example (notes §7.3, eqs. 7.42–7.44)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from nncli.core.errors import ShapeError
from nncli.core.kernels.layernorm import ln_backward, ln_forward
from nncli.core.layers.batchnorm import set_statistics
from nncli.core.module import HParams, Module
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec


class LNConfig(HParams):
    eps: float = Field(1e-5, gt=0, description="added to σ̂² so that σ̂ stays away from 0")
    affine: Literal["scalar", "per_feature", "none"] = Field(
        "scalar", description="scalar β, γ (the notes' LN), per-element ones (PyTorch's LayerNorm), or none"
    )


@modules.register("LN", "LayerNorm", "layer_norm")
class LN(Module):
    """LN(z) = β + γ · LN-S(z),  LN-S(z) = (z − μ̂) / σ̂   (eqs. 7.42, 7.43).

    μ̂ and σ̂² are the mean and the biased variance over ALL D features of one example (for (C, L)
    inputs: over C·L), and σ̂ = √(σ̂² + ε). By default β and γ are scalars (``weight`` = γ and
    ``bias`` = β, shape ()); ``affine: per_feature`` makes them shaped like one example, as
    PyTorch's ``nn.LayerNorm`` over the whole per-example shape; ``affine: none`` drops them.

    Shape: z (N, *s) → u (N, *s).

    Backward, with x̂ = LN-S(z) and g = γ ⊙ v (the gradient reaching x̂), going through μ̂ and σ̂:
        ∂J/∂z = (g − mean(g) − x̂ · mean(g ⊙ x̂)) / σ̂      (means over the D features of an example)
        ∂J/∂γ = Σ v ⊙ x̂,   ∂J/∂β = Σ v                   (sums over the batch, and over features if scalar)
    Eq. 7.44 follows: scaling z by α > 0 leaves LN-S(z) unchanged (up to ε).
    """

    notes_name = "LN"
    batch_split = "yes"
    Config = LNConfig

    def output_shape(self, input_shape):
        if len(input_shape) == 0:
            raise ShapeError("LN needs at least one feature axis per example, got shape ()")
        return tuple(input_shape)

    def init_params(self, rng):
        # PyTorch's init: γ = 1, β = 0, so a fresh LN is exactly LN-S
        affine = self.cfg.affine
        if affine == "none":
            return {}
        shape = () if affine == "scalar" else self.input_shape
        return {"weight": np.ones(shape), "bias": np.zeros(shape)}

    # -- computation: the notes' equations (reference) and the fast path (nncli.core.kernels.layernorm)
    def reference_forward(self, z):
        """LN(z) = β + γ · (z − μ̂)/σ̂, μ̂ and σ̂² = mean and variance of z's D features, + ε (7.42, 7.43)."""
        _, xhat, _ = self._reference_stats(z)
        gamma, beta = self._gamma_beta()
        return (beta + gamma * xhat).reshape(z.shape)

    def reference_backward(self, z, v):
        """(∂J/∂z, {"weight": ∂J/∂γ, "bias": ∂J/∂β}) for v = ∂J/∂u, without touching ``grads``:
        with g = γ ⊙ v, ∂J/∂z = (g − mean(g) − x̂ · mean(g ⊙ x̂)) / σ̂ (means over the D features),
        ∂J/∂γ = Σ v ⊙ x̂ and ∂J/∂β = Σ v (over the batch, and over the features if scalar)."""
        x, xhat, sigma = self._reference_stats(z)
        v = v.reshape(x.shape)
        g = self._gamma_beta()[0] * v
        dz = (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)) / sigma
        if self.cfg.affine == "none":
            return dz.reshape(z.shape), {}
        axis, shape = (0 if self.cfg.affine == "per_feature" else None), self.params["weight"].shape
        grads = {
            "weight": np.sum(v * xhat, axis=axis).reshape(shape),
            "bias": np.sum(v, axis=axis).reshape(shape),
        }
        return dz.reshape(z.shape), grads

    def _reference_stats(self, z):
        x = z.reshape(len(z), -1)
        mu = x.mean(axis=1, keepdims=True)
        sigma = np.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + self.cfg.eps)
        return x, (x - mu) / sigma, sigma

    def _gamma_beta(self):
        """γ and β as multipliers of an (N, D) x̂: scalars, rows of D, or 1 and 0 without affine."""
        if self.cfg.affine == "none":
            return 1.0, 0.0
        w, b = self.params["weight"], self.params["bias"]
        return (w, b) if self.cfg.affine == "scalar" else (w.reshape(-1), b.reshape(-1))

    def forward(self, z):
        x = z.reshape(z.shape[0], -1)
        u, self._mean, self._rstd = ln_forward(
            x, self.cfg.affine, self.params.get("weight"), self.params.get("bias"), self.cfg.eps
        )
        self._x = x  # by reference: the layer before returned it
        return u.reshape(z.shape)

    @property
    def _xhat(self) -> np.ndarray:
        """x̂ = LN-S(z) of the last forward, (N, D), computed on demand (backward does not use it)."""
        return (self._x - self._mean[:, None]) * self._rstd[:, None]

    def statistics(self, z):
        """μ̂ and σ̂ of each example, averaged over the batch."""
        return set_statistics(z.reshape(len(z), -1), 1)

    def backward(self, v):
        x = self._x
        dz = ln_backward(
            x,
            self._mean,
            self._rstd,
            v.reshape(x.shape),
            self.cfg.affine,
            self.params.get("weight"),
            self.grads.get("weight"),
            self.grads.get("bias"),
        )
        return dz.reshape(v.shape)

    def describe(self):
        d = int(np.prod(self.input_shape))
        affine = self.cfg.affine
        if affine == "scalar":
            formula = "γ + β = 1 + 1 = 2"
        elif affine == "per_feature":
            formula = f"2·D = 2·{d} = {2 * d}"
        else:
            formula = "0"
        # forward: Σz, Σ(z−μ̂)², (z−μ̂)/σ̂, and γ·x̂ + β;  backward: Σv, Σv⊙x̂, x̂·mean, scale by γ/σ̂
        fwd = (4 if affine != "none" else 3) * d
        bwd = (5 if affine == "per_feature" else 4) * d
        # saved for backward: z itself (by reference), μ̂ and 1/σ̂
        return {"formula": formula, "macs_forward": fwd, "macs_backward": bwd, "saved": d + 2}

    @classmethod
    def examples(cls):
        return [
            ({}, (5,)),
            ({}, (2, 3)),
            ({"affine": "per_feature"}, (2, 3)),
            ({"affine": "per_feature", "eps": 1e-3}, (4,)),
            ({"affine": "none"}, (4,)),
        ]

    # -- what trace and export ask -------------------------------------------------------------
    def trace_equations(self):
        return (
            "u = β + γ (z − μ̂)/σ̂  (7.42–7.43)",
            "∂J/∂z = (γ/σ̂)(v − mean v − ẑ·mean(v⊙ẑ)), ẑ = (z − μ̂)/σ̂; ∂J/∂γ = Σ v⊙ẑ, ∂J/∂β = Σ v",
        )

    def torch_spec(self):
        shape, eps = list(self.input_shape), self.cfg.eps
        if self.cfg.affine == "scalar":
            return TorchSpec("ScalarLayerNorm", (shape,), {"eps": eps}, helper_source=SCALAR_LAYER_NORM)
        return TorchSpec(
            "LayerNorm", (shape,), {"eps": eps, "elementwise_affine": self.cfg.affine == "per_feature"}
        )

    def to_onnx(self, graph, x, name):
        """LayerNormalization over every per-example axis (axis=1), σ̂ = √(σ̂² + ε) as here; the
        per-feature affine as its Scale and B; the notes' scalar γ, β (eq. 7.43) as a unit Scale, then
        Mul by γ and Add β (0-d tensors)."""
        shape, affine = tuple(self.input_shape), self.cfg.affine
        if affine == "per_feature":
            scale = graph.const(f"{name}.weight", self.params["weight"])
            ins = [x, scale, graph.const(f"{name}.bias", self.params["bias"])]
        else:
            ins = [x, graph.const(f"{name}/unit_scale", np.ones(shape))]
        y = graph.node("LayerNormalization", ins, name, axis=1, epsilon=float(self.cfg.eps))
        if affine == "scalar":
            y = graph.node("Mul", [y, graph.const(f"{name}.weight", self.params["weight"])], name)
            y = graph.node("Add", [y, graph.const(f"{name}.bias", self.params["bias"])], name)
        return y


#: the notes' LN for torch, which has no scalar-affine LayerNorm: the class an exported file defines
#: (and the cross-checks run); ``torch`` and ``nn`` are in scope
SCALAR_LAYER_NORM = '''
class ScalarLayerNorm(nn.Module):
    """The notes' LN: beta + gamma * (z - mean) / sqrt(var + eps) over all features of an example,
    with scalar gamma (``weight``) and beta (``bias``)."""

    def __init__(self, normalized_shape, eps):
        super().__init__()
        self.normalized_shape, self.eps = tuple(normalized_shape), eps
        self.weight = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        u = torch.nn.functional.layer_norm(x, self.normalized_shape, eps=self.eps)
        return u * self.weight + self.bias

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, affine=scalar"
'''
