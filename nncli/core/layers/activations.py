"""σ: elementwise activations (notes §7.2), each with its derivative for B[σ, z](v) = σ'(z) ⊙ v."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from nncli.core.kernels.threads import EXAMPLE_BLOCK, over_examples
from nncli.core.kernels.workspace import SHARED
from nncli.core.module import HParams, Module
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_erf_scalar = np.frompyfunc(math.erf, 1, 1)


#: read-only (1, *shape) rows of one value (zeros, a slope), which np.maximum broadcasts along the
#: batch: one per shape, dtype and value for every σ layer, a split batch's copies included
_ROWS: dict[tuple, np.ndarray] = {}
_ROWS_KEPT = 64


def constant_row(shape: tuple[int, ...], dtype: np.dtype, value: float) -> np.ndarray:
    """A read-only (1, *shape) array of ``value``, shared: np.maximum broadcasts it along the batch."""
    key = (shape, dtype.str, value)
    row = _ROWS.get(key)
    if row is None:
        if len(_ROWS) >= _ROWS_KEPT:
            _ROWS.clear()
        row = np.full((1,) + shape, value, dtype)
        row.flags.writeable = False
        _ROWS[key] = row
    return row


def _erf(x: np.ndarray) -> np.ndarray:
    """erf, elementwise, exact (Python's math.erf; numpy has none). Not scipy's: importing
    scipy.special loads a second OpenBLAS beside numpy's, and nncli runs one BLAS thread pool only.
    About 0.1 µs per element, which only the exact GELU pays."""
    return _erf_scalar(x).astype(np.float64)


class SigmaConfig(HParams):
    fn: Literal["relu", "sigmoid", "tanh", "leaky_relu", "gelu", "softplus", "identity"] = "relu"
    negative_slope: float = Field(0.01, description="leaky_relu: slope for z < 0")
    approximate: Literal["none", "tanh"] = Field("none", description="gelu: exact or tanh form")
    beta: float = Field(1.0, gt=0, description="softplus: (1/β)·log(1 + exp(β z))")
    threshold: float = Field(20.0, gt=0, description="softplus: linear above β z > threshold")


@modules.register("sigma", "σ", "activation", "act")
@modules.register("ReLU", defaults={"fn": "relu"})
@modules.register("Sigmoid", defaults={"fn": "sigmoid"})
@modules.register("Tanh", defaults={"fn": "tanh"})
@modules.register("LeakyReLU", "leaky_relu", defaults={"fn": "leaky_relu"})
@modules.register("GELU", defaults={"fn": "gelu"})
@modules.register("Softplus", defaults={"fn": "softplus"})
@modules.register("Identity", defaults={"fn": "identity"})
class Sigma(Module):
    """u = σ(z) elementwise; any input shape. Backward: ∂J/∂z = σ'(z) ⊙ v (eq. 7.59, diagonal Jacobian)."""

    notes_name = "σ"
    batch_split = "yes"
    Config = SigmaConfig
    cfg: SigmaConfig

    # Written without np.where and without a scalar operand of np.maximum: numpy's where (and any
    # masked loop) branches per element, and on a random sign pattern that costs 10-50x a plain pass;
    # np.maximum against a scalar takes a slow strided loop where against an array it is vectorised.
    # Each replacement below gives the same bits (including NaN and the choice of branch).

    def _zeros(self, z: np.ndarray) -> np.ndarray:
        """Zeros of one example's shape, (1, *z.shape[1:]), kept: broadcast along the batch."""
        zeros = getattr(self, "_zeros_row", None)
        if zeros is None or zeros.shape[1:] != z.shape[1:] or zeros.dtype != z.dtype:
            zeros = self._zeros_row = constant_row(z.shape[1:], z.dtype, 0.0)
        return zeros

    def _factor(self, z: np.ndarray) -> np.ndarray:
        """leaky_relu's σ'(z): 1 where z > 0, the slope elsewhere, from the mask as max(mask, slope)
        (exact for a slope in [0, 1]), in a scratch buffer."""
        f = SHARED.get("sigma.factor", z.shape, z.dtype)
        np.copyto(f, self._mask)
        return np.maximum(f, self._slope_row(z), out=f)

    def _slope_row(self, z: np.ndarray) -> np.ndarray:
        row = getattr(self, "_slope", None)
        if row is None or row.shape[1:] != z.shape[1:] or row.dtype != z.dtype:
            row = self._slope = constant_row(z.shape[1:], z.dtype, self.cfg.negative_slope)
        return row

    def forward(self, z):
        fn = self.cfg.fn
        if fn == "relu":
            # the mask (1 byte an element) is the cheapest state to keep; large arrays per block of
            # examples, on threads (small ones in one go: fewest calls)
            zeros = self._zeros(z)
            if z.size <= EXAMPLE_BLOCK:
                self._mask = z > 0
                return np.maximum(z, zeros)
            mask = self._mask = np.empty(z.shape, np.bool_)
            u = np.empty(z.shape, z.dtype)
            over_examples(
                lambda n0, n1, slot: _relu_forward(z[n0:n1], zeros, mask[n0:n1], u[n0:n1]),
                z.shape[0],
                z[:1].size,
            )
            return u
        if fn == "leaky_relu":
            self._mask = z > 0
            if 0.0 <= self.cfg.negative_slope <= 1.0:
                return np.multiply(z, self._factor(z))
            return np.where(self._mask, z, z * self.dtype.type(self.cfg.negative_slope))
        if fn == "sigmoid":
            # exp of -|z| never overflows; the two branches give 1/(1+e^{-z}) for either sign
            e = np.abs(z)
            np.negative(e, out=e)
            np.exp(e, out=e)
            # numerator 1 (z ≥ 0) or e^{-|z|}: max(mask, e), as 0 ≤ e ≤ 1 (NaN stays NaN)
            u = np.empty_like(z)
            np.greater_equal(z, 0, out=u)  # 1.0 / 0.0
            np.maximum(u, e, out=u)
            np.add(e, 1, out=e)
            u /= e  # over 1 + e^{-|z|}
            self._u = u
            return u
        if fn == "tanh":
            self._u = np.tanh(z)
            return self._u
        self._z = z
        if fn == "identity":
            return z.copy()
        if fn == "softplus":
            bz = self.cfg.beta * z
            soft = (np.maximum(bz, 0) + np.log1p(np.exp(-np.abs(bz)))) / self.cfg.beta
            return np.where(bz > self.cfg.threshold, z, soft).astype(z.dtype, copy=False)
        # gelu
        if self.cfg.approximate == "tanh":
            inner = math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)
            return (0.5 * z * (1 + np.tanh(inner))).astype(z.dtype, copy=False)
        return (0.5 * z * (1 + _erf(z / math.sqrt(2)))).astype(z.dtype, copy=False)

    def derivative(self) -> np.ndarray:
        """σ'(z) at the last forward input (not used by relu/leaky_relu/sigmoid/tanh fast paths)."""
        z, fn = self._z, self.cfg.fn
        if fn == "identity":
            return np.ones_like(z)
        if fn == "softplus":
            bz = self.cfg.beta * z
            e = np.exp(-np.abs(bz))
            sig = np.where(bz >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            return np.where(bz > self.cfg.threshold, 1.0, sig)
        if self.cfg.approximate == "tanh":
            c = math.sqrt(2 / math.pi)
            t = np.tanh(c * (z + 0.044715 * z**3))
            return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c * (1 + 3 * 0.044715 * z * z)
        cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
        return cdf + z * np.exp(-0.5 * z * z) / _SQRT_2PI

    def backward(self, v):
        fn = self.cfg.fn
        if fn == "relu":
            mask = self._mask
            if v.size <= EXAMPLE_BLOCK:
                return _relu_backward(v, mask, None, 0)
            dz = np.empty(v.shape, v.dtype)
            over_examples(
                lambda n0, n1, slot: _relu_backward(v[n0:n1], mask[n0:n1], dz[n0:n1], slot),
                v.shape[0],
                v[:1].size,
            )
            return dz
        if fn == "leaky_relu":
            if 0.0 <= self.cfg.negative_slope <= 1.0:
                return np.multiply(v, self._factor(v))
            return np.where(self._mask, v, v * self.dtype.type(self.cfg.negative_slope))
        if fn == "sigmoid":
            t = np.subtract(1, self._u)  # u (1 − u) v, in one array
            t *= self._u
            t *= v
            return t
        if fn == "tanh":
            t = np.multiply(self._u, self._u)  # (1 − u²) v, in one array
            np.subtract(1, t, out=t)
            t *= v
            return t
        return (v * self.derivative()).astype(v.dtype, copy=False)

    def hparams(self):
        # show only the settings that matter for this fn
        keep = {"fn"} | {
            "leaky_relu": {"negative_slope"},
            "gelu": {"approximate"},
            "softplus": {"beta", "threshold"},
        }.get(self.cfg.fn, set())
        return {k: v for k, v in self.cfg.model_dump().items() if k in keep}

    def describe(self):
        n = int(np.prod(self.input_shape))
        return {"formula": "", "macs_forward": 0, "macs_backward": n, "saved": n}

    @classmethod
    def examples(cls):
        fns = ["relu", "sigmoid", "tanh", "leaky_relu", "gelu", "softplus", "identity"]
        out = [({"fn": f}, (2, 3)) for f in fns]
        return out + [
            ({"fn": "gelu", "approximate": "tanh"}, (4,)),
            ({"fn": "softplus", "beta": 2.0, "threshold": 5.0}, (4,)),
        ]

    # -- what trace, inspect and export ask -----------------------------------------------------
    def label(self):
        return f"σ({self.cfg.fn})"

    def trace_equations(self):
        return _EQUATIONS[self.cfg.fn]

    def activity(self, z, u):
        """Share of dead ReLU units (never positive over the batch), or of saturated sigmoid / tanh
        entries."""
        fn = self.cfg.fn
        if fn in ("relu", "leaky_relu"):
            off = z <= 0
            return {"dead_units": float(np.mean(np.all(off, axis=0))), "inactive": float(np.mean(off))}
        if fn == "sigmoid":
            return {"saturated": float(np.mean((u < 0.01) | (u > 0.99)))}
        if fn == "tanh":
            return {"saturated": float(np.mean(np.abs(u) > 0.99))}
        return {}

    def torch_spec(self):
        c = self.cfg
        return {
            "relu": lambda: TorchSpec("ReLU"),
            "sigmoid": lambda: TorchSpec("Sigmoid"),
            "tanh": lambda: TorchSpec("Tanh"),
            "identity": lambda: TorchSpec("Identity"),
            "leaky_relu": lambda: TorchSpec("LeakyReLU", (c.negative_slope,)),
            "gelu": lambda: TorchSpec("GELU", kwargs={"approximate": c.approximate}),
            "softplus": lambda: TorchSpec("Softplus", kwargs={"beta": c.beta, "threshold": c.threshold}),
        }[c.fn]()

    def to_onnx(self, graph, x, name):
        """Relu / Sigmoid / Tanh / LeakyRelu / Identity; GELU as 0.5·z·(1 + Erf(z/√2)) or its tanh
        form (opset 17 has no Gelu); softplus as Softplus(βz)/β, and z where βz > threshold, as PyTorch."""
        c, g = self.cfg, graph
        simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity"}
        if c.fn in simple:
            return g.node(simple[c.fn], [x], name)
        if c.fn == "leaky_relu":
            return g.node("LeakyRelu", [x], name, alpha=float(c.negative_slope))
        if c.fn == "softplus":
            bx = g.node("Mul", [x, g.scalar(name, "beta", c.beta)], name)
            soft = g.node("Div", [g.node("Softplus", [bx], name), g.scalar(name, "beta_div", c.beta)], name)
            linear = g.node("Greater", [bx, g.scalar(name, "threshold", c.threshold)], name)
            return g.node("Where", [linear, x, soft], name)
        # gelu: 0.5·z·(1 + Erf(z/√2)), or the tanh form 0.5·z·(1 + tanh(√(2/π)(z + 0.044715 z³)))
        if c.approximate == "tanh":
            cube = g.node("Mul", [g.node("Mul", [x, x], name), x], name)
            inner = g.node("Add", [x, g.node("Mul", [cube, g.scalar(name, "k", 0.044715)], name)], name)
            t = g.node(
                "Tanh", [g.node("Mul", [inner, g.scalar(name, "c", math.sqrt(2 / math.pi))], name)], name
            )
        else:
            t = g.node("Erf", [g.node("Div", [x, g.scalar(name, "sqrt2", math.sqrt(2.0))], name)], name)
        half_x = g.node("Mul", [x, g.scalar(name, "half", 0.5)], name)
        return g.node("Mul", [half_x, g.node("Add", [t, g.scalar(name, "one", 1.0)], name)], name)


def _relu_forward(z: np.ndarray, zeros: np.ndarray, mask: np.ndarray, u: np.ndarray) -> None:
    """mask ← z > 0, u ← max(z, 0) (``zeros`` one example's zeros, broadcast down the batch)."""
    np.greater(z, 0, out=mask)
    np.maximum(z, zeros, out=u)


def _relu_backward(v: np.ndarray, mask: np.ndarray, dz: np.ndarray | None, slot: int) -> np.ndarray:
    """v · mask, into ``dz`` (a fresh array if None); the mask as floats first: multiplying by
    booleans casts in small buffers."""
    m = SHARED.get("sigma.factor", v.shape, v.dtype, slot)
    np.copyto(m, mask)
    return np.multiply(v, m, out=dz)


#: fn → (forward, backward) for the trace, with z the input, u the output and v = ∂J/∂u
_EQUATIONS = {
    "relu": ("u = max(z, 0)", "∂J/∂z = 1[z > 0] ⊙ v  (7.59)"),
    "leaky_relu": ("u = max(z, αz)", "∂J/∂z = (1[z > 0] + α·1[z ≤ 0]) ⊙ v  (7.59)"),
    "sigmoid": ("u = 1 / (1 + e^(−z))", "∂J/∂z = u ⊙ (1 − u) ⊙ v  (7.59)"),
    "tanh": ("u = tanh z", "∂J/∂z = (1 − u²) ⊙ v  (7.59)"),
    "gelu": ("u = z Φ(z)", "∂J/∂z = (Φ(z) + z φ(z)) ⊙ v  (7.59)"),
    "softplus": ("u = log(1 + e^(βz)) / β", "∂J/∂z = sigmoid(βz) ⊙ v  (7.59)"),
    "identity": ("u = z", "∂J/∂z = v"),
}
