"""LN: layer normalisation over all features of one example (notes §7.3, eqs. 7.42–7.44)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from nncli.core.errors import ShapeError
from nncli.core.kernels.threads import row_blocks, run_blocks, workers
from nncli.core.module import HParams, Module
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec

#: forward's block size when it runs on more than one thread (elements)
FORWARD_BLOCK_THREADED = 1 << 18


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

    # -- computation: row blocks of ~64K elements, so that the passes of each direction run in cache
    # instead of over the whole array, with every reduction a mat-vec over the block (faster than
    # numpy's sums there); backward spreads the blocks of large arrays over threads (nncli.core.kernels.threads).
    # Block boundaries depend only on the shape, and each row's arithmetic is the same in any block,
    # so the result does not depend on the thread count. Forward keeps x (by reference: the layer
    # before returned it), μ̂ and 1/σ̂, not x̂: writing x̂ out costs more than recomputing x − μ̂.

    def _scratch(self, name: str, shape, dtype) -> np.ndarray:
        """A buffer kept on the layer and reused while ``shape`` and ``dtype`` repeat (never returned)."""
        bufs = self.__dict__.setdefault("_bufs", {})
        buf = bufs.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = bufs[name] = np.empty(shape, dtype)
        return buf

    def _tile(self, name: str, p: np.ndarray, blocks, dtype) -> np.ndarray:
        """Per-feature ``p`` repeated down one block's rows: multiplying a block by a same-shape array
        runs as one flat loop, about twice as fast as broadcasting a row over 512-element rows."""
        rows = blocks[0][1] - blocks[0][0]
        tile = self._scratch(name, (rows, p.size), dtype)
        tile[...] = p.reshape(1, -1)
        return tile

    def forward(self, z):
        n = z.shape[0]
        x = z.reshape(n, -1)
        d = x.shape[1]
        affine = self.cfg.affine
        mean = np.empty(n, dtype=x.dtype)
        rstd = np.empty(n, dtype=x.dtype)
        u = np.empty_like(x)
        eps = self.cfg.eps
        # every step below is per row, so the blocks may depend on the thread count: two threads
        # measured 4.6–4.8 ms with 256K-element blocks against 8.5 ms with 64K ones (fewer calls
        # competing for the GIL), one thread 6.6–8.0 ms with 64K blocks against 8.5 with 256K
        threads = workers(x.size)
        blocks = row_blocks(n, d) if threads == 1 else row_blocks(n, d, FORWARD_BLOCK_THREADED)
        if affine == "per_feature":
            w = self._tile("w", self.params["weight"], blocks, x.dtype)
            b = self._tile("b", self.params["bias"], blocks, x.dtype)
        elif affine == "scalar":
            w, b = self.params["weight"], self.params["bias"]
        ones = np.ones(d, dtype=x.dtype)

        def block(k, slot):
            lo, hi = blocks[k]
            xb, ub, m, r = x[lo:hi], u[lo:hi], mean[lo:hi], rstd[lo:hi]
            _rowdot(xb, ones, out=m)  # μ̂ = Σz / D: summing first
            m /= d  # keeps a constant row's μ̂ exact
            np.subtract(xb, m[:, None], out=ub)
            np.divide(_rowdot(ub, ub), d, out=r)  # σ̂²
            r += eps
            np.sqrt(r, out=r)
            np.divide(1.0, r, out=r)
            ub *= r[:, None]  # x̂ = LN-S(z)
            if affine == "per_feature":
                ub *= w[: hi - lo]
                ub += b[: hi - lo]
            elif affine == "scalar":
                ub *= w
                ub += b

        run_blocks(block, len(blocks), threads)
        self._x, self._mean, self._rstd = x, mean, rstd
        return u.reshape(z.shape)

    @property
    def _xhat(self) -> np.ndarray:
        """x̂ = LN-S(z) of the last forward, (N, D), computed on demand (backward does not use it)."""
        return (self._x - self._mean[:, None]) * self._rstd[:, None]

    def backward(self, v):
        x, mean, rstd = self._x, self._mean, self._rstd
        n, d = x.shape
        v2 = v.reshape(n, d)
        affine = self.cfg.affine
        dz = np.empty_like(x)
        blocks = row_blocks(n, d)
        threads = workers(x.size)
        rows = blocks[0][1] - blocks[0][0]
        slots = range(min(threads, len(blocks)))
        hs = [self._scratch(f"h{i}", (rows, d), x.dtype) for i in slots]
        ts = [self._scratch(f"t{i}", (rows, d), x.dtype) for i in slots]
        per_feature = affine == "per_feature"
        if per_feature:
            w_d = self.params["weight"].reshape(-1) / d
            w = self._tile("w", self.params["weight"], blocks, x.dtype)
            ones = np.ones(rows, dtype=x.dtype)
            # column sums per block, added up in block order afterwards: deterministic for any threads
            part_w = np.empty((len(blocks), d), dtype=x.dtype)
            part_b = np.empty((len(blocks), d), dtype=x.dtype)
        else:
            gamma = self.params["weight"] if affine == "scalar" else x.dtype.type(1)
            ones_d = np.ones(d, dtype=x.dtype)
            sum_v = np.empty(n, dtype=x.dtype)  # Σ_d v and Σ_d v ⊙ x̂ for each row
            sum_vx = np.empty(n, dtype=x.dtype)

        def block(k, slot):
            lo, hi = blocks[k]
            xb, vb, db, m, r = x[lo:hi], v2[lo:hi], dz[lo:hi], mean[lo:hi], rstd[lo:hi]
            h, t = hs[slot][: hi - lo], ts[slot][: hi - lo]
            np.subtract(xb, m[:, None], out=h)  # x − μ̂ = x̂ σ̂
            np.multiply(vb, h, out=t)  # v ⊙ x̂ σ̂
            if per_feature:
                np.matmul(r, t, out=part_w[k])  # Σ_n v ⊙ x̂
                np.matmul(ones[: hi - lo], vb, out=part_b[k])  # Σ_n v
                mean_g = vb @ w_d  # mean(g), g = γ ⊙ v
                mean_gx = t @ w_d  # mean(g ⊙ x̂) σ̂
                np.multiply(vb, w[: hi - lo], out=db)  # g, becomes ∂J/∂z in place
            else:
                sv, svx = sum_v[lo:hi], sum_vx[lo:hi]
                np.matmul(vb, ones_d, out=sv)
                np.matmul(t, ones_d, out=svx)
                mean_g, mean_gx = sv * (gamma / d), svx * (gamma / d)  # mean(g), mean(g ⊙ x̂) σ̂
                svx *= r
                np.multiply(vb, gamma, out=db)
            # ∂J/∂z = (g − mean(g) − x̂ · mean(g ⊙ x̂)) / σ̂, with x̂ · mean(g ⊙ x̂) = (x − μ̂) · r² mean_gx
            mean_gx *= r
            mean_gx *= r
            np.multiply(h, mean_gx[:, None], out=t)
            db -= t
            db -= mean_g[:, None]
            db *= r[:, None]

        run_blocks(block, len(blocks), threads)
        if per_feature:
            self.grads["weight"] += part_w.sum(axis=0).reshape(self.grads["weight"].shape)
            self.grads["bias"] += part_b.sum(axis=0).reshape(self.grads["bias"].shape)
        elif affine == "scalar":
            # per-row sums are kept whole, so these totals do not depend on the blocks
            self.grads["weight"] += sum_vx.sum()
            self.grads["bias"] += sum_v.sum()
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


def _rowdot(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Σ_d a_nd b_nd (or b_d) for each row n, without an n×d temporary and each row on its own, so
    a row's value does not depend on the rows around it. np.vecdot (numpy ≥ 2) is a gufunc, as
    fast as a BLAS mat-vec here; einsum parses its subscripts while holding the GIL on every call."""
    if _HAS_VECDOT:
        return np.vecdot(a, b, out=out)
    return np.einsum("nd,nd->n" if b.ndim == 2 else "nd,d->n", a, b, out=out)


_HAS_VECDOT = hasattr(np, "vecdot")


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
