"""LN's fast path: row blocks in cache, reductions as mat-vecs, large arrays on threads.

``ln_forward`` and ``ln_backward`` compute what ``LN.reference_forward`` and ``reference_backward``
(nncli.core.layers.norm) write as the notes' equations 7.42–7.43, on x = z as (N, D) rows:

    forward    μ̂ = Σx / D,  σ̂ = √(Σ(x − μ̂)² / D + ε),  u = β + γ (x − μ̂)/σ̂
    backward   g = γ ⊙ v,  ∂J/∂z = (g − mean(g) − x̂ · mean(g ⊙ x̂)) / σ̂,  ∂J/∂γ = Σ v ⊙ x̂,  ∂J/∂β = Σ v

The rows are cut into blocks of ~64K elements, so that the passes of each direction run in cache
instead of over the whole array, with every reduction a mat-vec over the block (faster than numpy's
sums there); large arrays spread their blocks over threads (``kernels.threads``). Block boundaries
depend only on the shape, and each row's arithmetic is the same in any block, so the result does not
depend on the thread count. Forward returns μ̂ and 1/σ̂ for backward, not x̂: writing x̂ out costs
more than recomputing x − μ̂. Temporaries come from the shared workspace, one set per thread slot.
"""

from __future__ import annotations

import numpy as np

from nncli.core.kernels.threads import row_blocks, run_blocks, workers
from nncli.core.kernels.workspace import SHARED

#: forward's block size when it runs on more than one thread (elements)
FORWARD_BLOCK_THREADED = 1 << 18


def _tile(name: str, p: np.ndarray, rows: int, dtype) -> np.ndarray:
    """Per-feature ``p`` repeated down ``rows`` rows: multiplying a block by a same-shape array runs as
    one flat loop, about twice as fast as broadcasting a row over 512-element rows."""
    tile = SHARED.get(name, (rows, p.size), dtype)
    tile[...] = p.reshape(1, -1)
    return tile


def ln_forward(
    x: np.ndarray, affine: str, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, μ̂, 1/σ̂) for rows x (N, D); ``affine`` is "scalar", "per_feature" or "none"."""
    n, d = x.shape
    mean = np.empty(n, dtype=x.dtype)
    rstd = np.empty(n, dtype=x.dtype)
    u = np.empty_like(x)
    # every step below is per row, so the blocks may depend on the thread count: two threads
    # measured 4.6–4.8 ms with 256K-element blocks against 8.5 ms with 64K ones (fewer calls
    # competing for the GIL), one thread 6.6–8.0 ms with 64K blocks against 8.5 with 256K
    threads = workers(x.size)
    blocks = row_blocks(n, d) if threads == 1 else row_blocks(n, d, FORWARD_BLOCK_THREADED)
    rows = blocks[0][1] - blocks[0][0]
    w, b = weight, bias
    if affine == "per_feature":
        assert weight is not None and bias is not None
        w, b = _tile("ln.w", weight, rows, x.dtype), _tile("ln.b", bias, rows, x.dtype)
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
    return u, mean, rstd


def ln_backward(
    x: np.ndarray,
    mean: np.ndarray,
    rstd: np.ndarray,
    v: np.ndarray,
    affine: str,
    weight: np.ndarray | None,
    grad_weight: np.ndarray | None,
    grad_bias: np.ndarray | None,
) -> np.ndarray:
    """∂J/∂z (N, D) for v = ∂J/∂u (N, D); ADDS ∂J/∂γ and ∂J/∂β into ``grad_weight``, ``grad_bias``."""
    n, d = x.shape
    dz = np.empty_like(x)
    blocks = row_blocks(n, d)
    threads = workers(x.size)
    rows = blocks[0][1] - blocks[0][0]
    slots = range(min(threads, len(blocks)))
    hs = [SHARED.get("ln.h", (rows, d), x.dtype, slot) for slot in slots]
    ts = [SHARED.get("ln.t", (rows, d), x.dtype, slot) for slot in slots]
    per_feature = affine == "per_feature"
    if per_feature:
        assert weight is not None
        w_d = weight.reshape(-1) / d
        w = _tile("ln.w", weight, rows, x.dtype)
        ones = np.ones(rows, dtype=x.dtype)
        # column sums per block, added up in block order afterwards: deterministic for any threads
        part_w = np.empty((len(blocks), d), dtype=x.dtype)
        part_b = np.empty((len(blocks), d), dtype=x.dtype)
    else:
        gamma = weight if affine == "scalar" else x.dtype.type(1)
        ones_d = np.ones(d, dtype=x.dtype)
        sum_v = np.empty(n, dtype=x.dtype)  # Σ_d v and Σ_d v ⊙ x̂ for each row
        sum_vx = np.empty(n, dtype=x.dtype)

    def block(k, slot):
        lo, hi = blocks[k]
        xb, vb, db, m, r = x[lo:hi], v[lo:hi], dz[lo:hi], mean[lo:hi], rstd[lo:hi]
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
    if affine == "none":
        return dz
    assert grad_weight is not None and grad_bias is not None  # an affine LN has both
    if per_feature:
        grad_weight += part_w.sum(axis=0).reshape(grad_weight.shape)
        grad_bias += part_b.sum(axis=0).reshape(grad_bias.shape)
    else:
        # per-row sums are kept whole, so these totals do not depend on the blocks
        grad_weight += sum_vx.sum()
        grad_bias += sum_v.sum()
    return dz


def _rowdot(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Σ_d a_nd b_nd (or b_d) for each row n, without an n×d temporary and each row on its own, so
    a row's value does not depend on the rows around it. np.vecdot (numpy ≥ 2) is a gufunc, as
    fast as a BLAS mat-vec here; einsum parses its subscripts while holding the GIL on every call."""
    if _HAS_VECDOT:
        return np.vecdot(a, b, out=out)
    return np.einsum("nd,nd->n" if b.ndim == 2 else "nd,d->n", a, b, out=out)


_HAS_VECDOT = hasattr(np, "vecdot")
