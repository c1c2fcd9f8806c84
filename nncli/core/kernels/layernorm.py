"""LN's fast path: row blocks in cache, reductions as mat-vecs, large arrays on threads.

``ln_forward`` and ``ln_backward`` compute what ``LN.reference_forward`` and ``reference_backward``
(nncli.core.layers.norm) write as the notes' equations 7.42–7.43, on x = z as (N, D) rows:

    forward    μ̂ = Σx / D,  σ̂ = √(Σ(x − μ̂)² / D + ε),  u = β + γ (x − μ̂)/σ̂
    backward   with h = x − μ̂ = x̂ σ̂ and g = γ ⊙ v:
               ∂J/∂z = (g − mean(g) − h · mean(g ⊙ h)/σ̂²) / σ̂,  ∂J/∂γ = Σ v ⊙ x̂,  ∂J/∂β = Σ v

The rows are cut into blocks (``BLOCK`` elements forward, ``BACKWARD_BLOCK`` backward, whose four
arrays per block need the smaller size to stay near the L2 cache), so that the passes of each
direction after the first touch of a row run in cache instead of over the whole array, with every
reduction a mat-vec over the block; large arrays spread their blocks over threads
(``kernels.threads``). Both directions centre before multiplying (two-pass variance; ∂J/∂γ and
mean(g ⊙ h) from h, not from v ⊙ x minus a mean term, which loses |μ̂|/σ̂ of float32's precision:
10× on ∂J/∂γ at |μ̂|/σ̂ = 10).

Half of the passes multiply by a column (one scalar per row, ``a * r[:, None]``) or add a row. numpy
runs such a broadcast by copying the broadcast operand into 8192-element buffers first, at half the
speed of a same-shape product; with the ufunc buffer cut to one row (``_run``) each row is one
unbuffered loop at nearly full speed, for rows of 512 or more (shorter rows lose: they keep the
default, and per-feature rows repeated down the block). A scalar γ is folded into the per-row scale,
a pass less each way.

Block boundaries depend only on the shape, and each row's arithmetic is the same in any block, so the
result does not depend on the thread count. Forward returns μ̂ and 1/σ̂ for backward, not x̂: writing
x̂ out costs more than recomputing x − μ̂. Temporaries come from the shared workspace, one set per
thread slot.

Measured on the benchmark's 8192×512 float32 with a per-feature γ, β (forward + backward, medians of
40–60 rounds alternating with the previous kernel in one process, 1-min load 0.9–1.0, ours
included): one thread (thread time) 10.2 → 8.1–8.5 ms, two threads (wall) 6.8 → 5.2 ms; PyTorch's
LayerNorm measured beside it 3.5 ms on one thread, on two a median of 5.1 and a lower quartile of
2.6 (its OpenMP threads and our pool in one process disturb each other). Blocks of 2¹⁷ / 2¹⁸ /
2¹⁹ elements: 8.4 / 8.1 / 8.2 ms on one thread, 7.2 / 5.6 / 6.0 ms on two (2¹⁵–2¹⁶ lose on both:
each numpy call costs 0.5–1.4 µs, more than cache-sized blocks save). Scalar γ 9.5 → 7.8 ms, no
affine 9.1 → 7.7 ms (one thread, load 2). Rows of 128–300 features, where the buffer stays, run as
before (0–5 % faster). What is left is the number of passes: 2 reductions and 4 broadcast passes
forward, 4 and 7 backward, each a full read and write of a block, where a fused loop (PyTorch's) makes
one read of x and v and one write each way; storing h = x − μ̂ in forward for backward measured
slower (forward +1.0 ms, backward −0.5 ms), and v ⊙ x instead of v ⊙ h would save one pass at the
price of ∂J/∂γ's precision. The backward's blocks now hold four arrays, not five (v ⊙ h written into
∂J/∂z's rows, h scaled in place: the same operations, the same bits), and are half as large (above):
8.56 → 5.6 ms on one thread, 4.73 → 4.59 on two, for the backward alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nncli.core.kernels.threads import row_blocks, run_blocks, workers
from nncli.core.kernels.workspace import SHARED

#: elements per row block of the forward, for any thread count (float32: 1 MB per array of a block)
BLOCK = 1 << 18
#: elements per row block of the backward, whose four arrays of a block (x, v, ∂J/∂z and h; 2 MB in
#: float32) then stay near the L2 cache. The ∂J/∂γ, ∂J/∂β partials are summed per block, so this
#: size, fixed by the shape alone, sets their bits. Measured (8192×512 float32, per-feature γ, ms,
#: medians of 5 alternating rounds, blocks of 2¹⁸ / 2¹⁷ / 2¹⁶): one thread 8.19 / 6.24 / 6.19, two
#: threads 4.72 / 4.54 / 5.33. The forward keeps 2¹⁸: on two threads 2.16 / 4.13 / 4.76 ms, its
#: threads waiting on each other's GIL between more numpy calls.
BACKWARD_BLOCK = 1 << 17
#: rows at least this long get numpy's ufunc buffer cut to one row (see ``_run``)
ROW_LOOP_MIN = 512


#: elements below which a mat-vec runs on one thread in OpenBLAS whatever its setting (its gemv's
#: own bar: 2304 × GEMM_MULTITHREAD_THRESHOLD, 4 by default)
_ONE_THREAD_MATVEC = 9216


def _run(fn: Callable[[int, int], None], n_blocks: int, threads: int, d: int, size: int = 0) -> None:
    """``run_blocks(fn, ...)`` with numpy's ufunc buffer cut to the row length on each thread.

    An array of fewer than ``_ONE_THREAD_MATVEC`` elements (``size``) in short rows is one block on
    the calling thread, whose mat-vecs OpenBLAS runs on one thread anyway: it skips ``run_blocks``
    and its reading of BLAS's thread setting (~4 µs a call, 9 % of a step of configs/spirals_ln.yaml).

    numpy runs ``a * r[:, None]`` (a scalar per row) or ``a * w`` (a row repeated) by copying the
    broadcast operand into 8192-element buffers first: 2× the time of a same-shape product. With
    a buffer no longer than a row, each row runs as one unbuffered loop at the speed of a same-shape
    product (rows of 512–4096: 1.1–1.5× instead of 2×); shorter rows lose, so they keep the default.
    The setting is per thread (a context variable), so it is set once per run of blocks, not per
    block (≈3 µs each time), and restored afterwards.
    """
    if n_blocks == 1 and 0 < size < _ONE_THREAD_MATVEC and d < ROW_LOOP_MIN:
        fn(0, 0)
        return
    buffer = min(d, 8192) // 16 * 16 if d >= ROW_LOOP_MIN else 0  # numpy wants a multiple of 16
    if not buffer:  # short rows keep numpy's buffer: the blocks as they are (small arrays: fewest calls)
        run_blocks(fn, n_blocks, threads)
        return
    runs = max(1, min(threads, n_blocks))
    bounds = [n_blocks * i // runs for i in range(runs + 1)]

    def run(j: int, slot: int) -> None:
        old = np.setbufsize(buffer)
        try:
            for k in range(bounds[j], bounds[j + 1]):
                fn(k, slot)
        finally:
            np.setbufsize(old)

    run_blocks(run, runs, runs)


def _row(name: str, p, rows: int, d: int, dtype):
    """Per-feature ``p`` as the right operand of a block's product: the row itself where rows are
    long enough for unbuffered loops, else repeated down ``rows`` rows (a same-shape product runs as
    one flat loop, about twice as fast as broadcasting a short row)."""
    if d >= ROW_LOOP_MIN:
        return np.asarray(p, dtype=dtype).reshape(1, d)
    tile = SHARED.get(name, (rows, d), dtype)
    tile[...] = np.reshape(p, (1, d))
    return tile


def ln_forward(
    x: np.ndarray, affine: str, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, μ̂, 1/σ̂) for rows x (N, D); ``affine`` is "scalar", "per_feature" or "none"."""
    n, d = x.shape
    mean = np.empty(n, dtype=x.dtype)
    rstd = np.empty(n, dtype=x.dtype)
    u = np.empty_like(x)
    threads = workers(x.size)
    blocks = row_blocks(n, d, BLOCK)
    rows = blocks[0][1] - blocks[0][0]
    w, b = weight, bias
    if affine == "per_feature":
        w, b = _row("ln.w", weight, rows, d, x.dtype), _row("ln.b", bias, rows, d, x.dtype)
    ones = np.ones(d, dtype=x.dtype)

    def block(k, slot):
        lo, hi = blocks[k]
        xb, ub, m, r = x[lo:hi], u[lo:hi], mean[lo:hi], rstd[lo:hi]
        _rowdot(xb, ones, out=m)  # μ̂ = Σz / D: summing first
        m /= d  # keeps a constant row's μ̂ exact
        np.subtract(xb, m[:, None], out=ub)
        np.divide(_rowdot(ub, ub), d, out=r)  # σ̂²: two passes, centred first
        r += eps
        np.sqrt(r, out=r)
        np.divide(1.0, r, out=r)
        if affine == "per_feature":
            ub *= r[:, None]  # x̂ = LN-S(z)
            ub *= w[: hi - lo]
            ub += b[: hi - lo]
        elif affine == "scalar":
            ub *= (r * w)[:, None]  # γ x̂ in one pass
            ub += b
        else:
            ub *= r[:, None]

    _run(block, len(blocks), threads, d, x.size)
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
    blocks = row_blocks(n, d, BACKWARD_BLOCK)
    threads = workers(x.size)
    rows = blocks[0][1] - blocks[0][0]
    slots = range(min(threads, len(blocks)))
    hs = [SHARED.get("ln.h", (rows, d), x.dtype, slot) for slot in slots]
    per_feature = affine == "per_feature"
    if per_feature:
        assert weight is not None
        w_d = weight.reshape(-1) / d
        w = _row("ln.w", weight, rows, d, x.dtype)
        ones = np.ones(rows, dtype=x.dtype)
        # column sums per block, added up in block order afterwards: deterministic for any threads
        part_w = np.empty((len(blocks), d), dtype=x.dtype)
        part_b = np.empty((len(blocks), d), dtype=x.dtype)
    else:
        gamma = weight if affine == "scalar" else x.dtype.type(1)
        gamma_d = gamma / d
        ones_d = np.ones(d, dtype=x.dtype)
        sum_v = np.empty(n, dtype=x.dtype)  # Σ_d v and Σ_d v ⊙ x̂ for each row
        sum_vh = np.empty(n, dtype=x.dtype)

    def block(k, slot):
        # four arrays of a block in cache (x, v, ∂J/∂z and h): v ⊙ h lives in ∂J/∂z's rows until
        # g is written there, and h becomes h r² mean(g ⊙ h) in place
        lo, hi = blocks[k]
        xb, vb, db, m, r = x[lo:hi], v[lo:hi], dz[lo:hi], mean[lo:hi], rstd[lo:hi]
        h = hs[slot][: hi - lo]
        np.subtract(xb, m[:, None], out=h)  # x − μ̂ = x̂ σ̂
        np.multiply(vb, h, out=db)  # v ⊙ h
        if per_feature:
            np.matmul(r, db, out=part_w[k])  # Σ_n v ⊙ x̂
            np.matmul(ones[: hi - lo], vb, out=part_b[k])  # Σ_n v
            mean_g = vb @ w_d  # mean(g), g = γ ⊙ v
            mean_gh = db @ w_d  # mean(g ⊙ h)
            # ∂J/∂z = r (g − mean(g) − h r² mean(g ⊙ h))
            mean_gh *= r
            mean_gh *= r
            h *= mean_gh[:, None]
            np.multiply(vb, w[: hi - lo], out=db)  # g, becomes ∂J/∂z in place
            db -= h
            db -= mean_g[:, None]
            db *= r[:, None]
        else:
            # γ is a scalar: ∂J/∂z = (r γ) v − (r³ mean(g ⊙ h)) h − r mean(g), a pass less
            sv, svh = sum_v[lo:hi], sum_vh[lo:hi]
            np.matmul(vb, ones_d, out=sv)
            np.matmul(db, ones_d, out=svh)
            coef = r * gamma_d  # r mean(·) of g = γ v
            h *= (coef * r * r * svh)[:, None]
            np.multiply(vb, (r * gamma)[:, None], out=db)
            db -= h
            db -= (coef * sv)[:, None]
            svh *= r  # Σ_d v ⊙ x̂

    _run(block, len(blocks), threads, d, x.size)
    if affine == "none":
        return dz
    assert grad_weight is not None and grad_bias is not None  # an affine LN has both
    if per_feature:
        grad_weight += part_w.sum(axis=0).reshape(grad_weight.shape)
        grad_bias += part_b.sum(axis=0).reshape(grad_bias.shape)
    else:
        # per-row sums are kept whole, so these totals do not depend on the blocks
        grad_weight += sum_vh.sum()
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
