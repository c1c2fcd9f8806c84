"""LN: layer normalisation over all features of one example (notes §7.3, eqs. 7.42–7.44)."""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..registry import modules
from .base import HParams, Module


class LNConfig(HParams):
    eps: float = Field(1e-5, gt=0, description="added to σ̂² so that σ̂ stays away from 0")
    affine: Literal["scalar", "per_feature", "none"] = Field(
        "scalar", description="scalar β, γ (the notes' LN), per-element ones (PyTorch's LayerNorm), or none")


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

    def forward(self, z):
        n = z.shape[0]
        x = z.reshape(n, -1)
        d = x.shape[1]
        xc = x - x.mean(axis=1, keepdims=True)
        # σ̂² by a row-wise dot product: no second N×D temporary
        var = np.einsum("nd,nd->n", xc, xc) / d
        rstd = 1.0 / np.sqrt(var + self.cfg.eps)
        xc *= rstd[:, None]                       # xc is now x̂ = LN-S(z), kept for backward
        self._xhat, self._rstd = xc, rstd
        if self.cfg.affine == "none":
            return xc.reshape(z.shape).copy()
        w, b = self.params["weight"], self.params["bias"]
        u = xc * w.reshape(-1) if self.cfg.affine == "per_feature" else xc * w
        u += b.reshape(-1) if self.cfg.affine == "per_feature" else b
        return u.reshape(z.shape)

    def backward(self, v):
        xhat, rstd = self._xhat, self._rstd
        n, d = xhat.shape
        v2 = v.reshape(n, d)
        affine = self.cfg.affine
        t = v2 * xhat                              # the one N×D temporary of the scalar path
        if affine == "per_feature":
            w = self.params["weight"].reshape(-1)
            self.grads["weight"] += t.sum(axis=0).reshape(self.grads["weight"].shape)
            self.grads["bias"] += v2.sum(axis=0).reshape(self.grads["bias"].shape)
            dz = v2 * w                            # g = γ ⊙ v, becomes ∂J/∂z in place
            mean_g = dz.sum(axis=1) / d
            t *= w                                 # t = g ⊙ x̂ (row sums beat a BLAS mat-vec here)
            mean_gx = t.sum(axis=1) / d
            np.multiply(xhat, mean_gx[:, None], out=t)
            dz -= t
            dz -= mean_g[:, None]
            dz *= rstd[:, None]
            return dz.reshape(v.shape)
        sum_v = v2.sum(axis=1)
        sum_vx = t.sum(axis=1)
        mean_v, mean_vx = sum_v / d, sum_vx / d
        if affine == "scalar":
            self.grads["weight"] += sum_vx.sum()
            self.grads["bias"] += sum_v.sum()
            gamma = self.params["weight"]
        else:
            gamma = 1.0
        np.multiply(xhat, mean_vx[:, None], out=t)
        np.subtract(v2, t, out=t)
        t -= mean_v[:, None]
        t *= (gamma * rstd)[:, None]
        return t.reshape(v.shape)

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
        return {"formula": formula, "macs_forward": fwd, "macs_backward": bwd, "saved": d + 1}

    @classmethod
    def examples(cls):
        return [({}, (5,)), ({}, (2, 3)), ({"affine": "per_feature"}, (2, 3)),
                ({"affine": "per_feature", "eps": 1e-3}, (4,)), ({"affine": "none"}, (4,))]

    def to_torch(self):
        import torch

        dtype = torch.float64 if self.dtype == np.float64 else torch.float32
        shape = list(self.input_shape)
        if self.cfg.affine == "scalar":
            layer = _scalar_layer_norm_class()(shape, self.cfg.eps, dtype)
        else:
            layer = torch.nn.LayerNorm(shape, eps=self.cfg.eps, dtype=dtype,
                                       elementwise_affine=self.cfg.affine == "per_feature")
        with torch.no_grad():
            for k, p in self.params.items():
                getattr(layer, k).copy_(torch.from_numpy(np.array(p, copy=True)))
        return layer


@lru_cache(maxsize=None)
def _scalar_layer_norm_class():
    """A torch module for the notes' LN: scalar ``weight`` (γ) and ``bias`` (β), both shape ()."""
    import torch
    import torch.nn.functional as F

    class ScalarLayerNorm(torch.nn.Module):
        def __init__(self, normalized_shape, eps, dtype):
            super().__init__()
            self.normalized_shape = tuple(normalized_shape)
            self.eps = eps
            self.weight = torch.nn.Parameter(torch.ones((), dtype=dtype))
            self.bias = torch.nn.Parameter(torch.zeros((), dtype=dtype))

        def forward(self, x):
            return F.layer_norm(x, self.normalized_shape, eps=self.eps) * self.weight + self.bias

        def extra_repr(self):
            return f"{self.normalized_shape}, eps={self.eps}, affine=scalar"

    return ScalarLayerNorm
