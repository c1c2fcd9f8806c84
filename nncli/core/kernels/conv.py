"""The convolution's fast path: im2col, GEMMs per block of examples, col2im; blocks on threads.

``conv_forward`` and ``conv_backward`` compute what ``ConvND.reference_forward`` and
``reference_backward`` (nncli.core.layers.conv) write as the notes' equations 7.48–7.51, on
columns as in ``im2col`` (W₂ = W as (C', C·K), P output positions per example):

    forward    u[n] = W₂ cols[n] + b                         (C', P) per example
    backward   ∂J/∂W = Σₙ v[n] cols[n]ᵀ,  ∂J/∂b = Σ v,  ∂J/∂z = col2im(W₂ᵀ v)

where col2im runs on the flat padded input (``conv_flat``): W₂ᵀ v in rows (κ, c) as long as a
channel's padded plane, then one add per kernel offset and example; at a larger stride the same on
each phase of the positions modulo the stride, then one strided copy per phase into ∂J/∂z. Where
backward runs by channel (below), Conv2D at stride 1 computes ∂J/∂z as what it also is, the
convolution of v (padded) with the flipped kernel (``transposed_geometry``): columns of v and one
more GEMM, no col2im.

Two layouts of the columns, chosen per shape (``examples_layout``):

- by example, (n, C·K + 1, P): each example's columns apart, with a row of ones below them so that
  the bias is one more column of W₂ (forward) and ∂J/∂b one more row of ∂J/∂W (backward). The
  forward's batched GEMM writes u in its batch-first layout directly, and v is read as it comes:
  no transposing copy of u or v and no separate bias pass.
- by channel, (C·K, n·P): ∂J/∂W of a block is ONE GEMM whose inner dimension is n·P, at the
  price of copying v into (C', n·P). Faster where the per-example products v[n] cols[n]ᵀ are too
  small for BLAS (P < 64 output positions); the forward always uses the first layout.

Conv1D at stride 1 lays its forward and ∂J/∂W columns out on the padded line too (``conv_flat``):
rows in (κ, c) order, so that im2col is K copies of whole examples rather than one numpy loop per row
of P floats.

Columns on the padded-width grid (``conv_grid``) come in both layouts too: by channel where the
product is too large for blocks of columns (``channel_major``), then forward, ∂J/∂W and ∂J/∂z are
each one GEMM per block.

The batch is cut into blocks of examples whose columns stay near the L2/L3 cache; large work is
spread over threads (``kernels.threads``), each with BLAS on one thread. Block boundaries and the
layout depend only on the shapes, and the ∂J/∂θ partials are summed in block order, so the results
are the same bits with 1 or many threads. Temporaries come from the shared workspace, one set per
thread slot.
"""

from __future__ import annotations

import numpy as np

from nncli.core.kernels.conv_flat import (
    FlatInputGrad,
    from_kernel_major,
    im2col_line,
    kernel_major,
    line_fits,
)
from nncli.core.kernels.conv_grid import (
    channel_major,
    grid_columns,
    grid_forward,
    grid_layout,
    grid_product,
    padded_rows,
)
from nncli.core.kernels.gemm import matmul_columns
from nncli.core.kernels.im2col import (
    Geometry,
    col2im,
    col2im_examples,
    fill_rows,
    grid_fits,
    im2col,
    im2col_examples,
    onto_grid,
)
from nncli.core.kernels.threads import MIN_PARALLEL_ELEMENTS, run_blocks, workers
from nncli.core.kernels.workspace import SHARED

#: elements of columns (forward) and of ∂J/∂cols (backward) per block of examples (4 MB in float32):
#: each block runs on one thread with BLAS on one thread, so its columns should stay near L2/L3.
_BLOCK = 1 << 20
#: work (elements of columns) from which the blocks are spread over threads, and so from which the
#: batch is always cut into an even number (≥ 2) of blocks, whatever the thread count. Measured on
#: 2 cores (float32 forward+backward, 1 vs 2 threads): waking the second thread and handing the GIL
#: between the block's many numpy calls cost ~0.3 ms per call pair, so 2 threads lose below ~450K
#: (Conv1D 8→16, L 256, before its columns went on the line: 328K 1.66 vs 2.01 ms; 492K 2.32 vs 2.33;
#: 655K 3.08 vs 2.88. Conv2D 16→32, 28×28: 452K 2.5 vs 2.9 ms; 677K 3.4 vs 2.9). The MNIST-1D CNN's
#: layers have ≤ 75K.
_MIN_PARALLEL = 1 << 19
#: the same bar for Conv1D's columns on the line (``conv_flat``, stride 1), whose copies are whole
#: examples: less work per element of columns, so two threads pay later. Measured (float32, 2 cores,
#: forward + backward of 8→16, k 5, N 64, ms, blocks on 2 threads / the batch on one): L 256 (655K)
#: 1.49 / 1.24, L 320 (819K) 1.43 / 1.60, L 384 (983K) 1.64 / 1.89; Conv2D 8→16 on 12×12 (664K)
#: 1.77 / 2.09 keeps the lower bar.
_MIN_PARALLEL_LINE = 3 << 18


def _parallel_from(line: bool) -> int:
    """Elements of columns from which a layer's blocks are spread over threads (``_MIN_PARALLEL``)."""
    return _MIN_PARALLEL_LINE if line else _MIN_PARALLEL


def _blocks(N: int, per_example: int, parallel_from: int = _MIN_PARALLEL) -> list[tuple[int, int]]:
    """(n0, n1) ranges covering 0..N, about _BLOCK elements of columns each, of near-equal sizes.

    The boundaries depend only on the shapes, never on the thread count, so every block (and the
    block-ordered sum of the ∂J/∂θ partials) is computed the same way with 1 or many threads.
    """
    total = N * max(per_example, 1)
    nb = -(-total // _BLOCK)
    if total >= parallel_from:
        nb = max(2, nb + nb % 2)  # even, so two threads get equal work
    nb = max(1, min(N, nb))
    return [(N * i // nb, N * (i + 1) // nb) for i in range(nb)]


def _threads(total: int, parallel_from: int = _MIN_PARALLEL) -> int:
    """Threads for ``total`` elements of columns: 1 below ``parallel_from``, else numpy's BLAS setting."""
    return 1 if total < parallel_from else workers(max(total, MIN_PARALLEL_ELEMENTS))


def r_dtype(a: np.ndarray, b: np.ndarray) -> np.dtype:
    """The dtype numpy gives a @ b (float32 stays float32)."""
    return np.result_type(a.dtype, b.dtype)


#: output positions per example from which ∂J/∂W is summed from per-example products. Measured
#: (float32, 1 thread, backward for ∂J/∂θ, by example / by channel, ms): Conv2D 3→32 32×32 k3, N 64
#: (P 1024) 1.76 / 3.70; 32→64 16×16 (P 256) 6.36 / 6.76; 32→48 8×8 (P 64) 1.05 / 1.01, a tie;
#: Conv1D 8→16 L 256 k5 (P 256) 0.60 / 0.89; the MNIST-1D CNN's 25→25 k3 s2 layers (P 10, 19)
#: 0.24 / 0.20 and 0.28 / 0.25: BLAS's per-call cost beats the transposing copy only for long rows.
_MIN_P_BY_EXAMPLE = 64


def examples_layout(P: int) -> bool:
    """Whether backward uses the columns by example (else by channel, one GEMM per block)."""
    return P >= _MIN_P_BY_EXAMPLE


def _columns(zp: np.ndarray, geom: Geometry, out: tuple, n0: int, n1: int, bias: bool, slot: int):
    """The examples n0..n1 as columns (n, C·K [+ 1], P), the last row ones when ``bias``."""
    CK, P = zp.shape[1] * geom.K, int(np.prod(out))
    cols = padded_rows("conv.cols", n1 - n0, CK + bias, P, zp.dtype, slot)
    im2col_examples(zp[n0:n1], geom, out, into=cols[:, :CK])
    if bias:
        cols[:, CK] = 1
    return cols


def _with_bias(W: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """W₂ (C', C·K), with the bias as one more column when there is one."""
    W2 = W.reshape(W.shape[0], -1)
    return W2 if bias is None else np.concatenate([W2, bias.reshape(-1, 1).astype(W.dtype)], axis=1)


def conv_forward(
    z: np.ndarray, zp: np.ndarray, W: np.ndarray, bias: np.ndarray | None, geom: Geometry, out: tuple
) -> np.ndarray:
    """u (N, C', *out) for z (N, C, *S); ``zp`` is the padded buffer (``pad_buffer``: border set,
    interior written here block by block), which backward reads again."""
    N, C = z.shape[:2]
    Co = W.shape[0]
    P, CK = int(np.prod(out)), C * geom.K
    line = line_fits(zp, geom)  # Conv1D at stride 1: columns as slices of the padded line
    Wb = _with_bias(kernel_major(W).T if line else W, bias)
    bar = _parallel_from(line)
    blocks = _blocks(N, CK * P, bar)
    grid = grid_forward(geom, CK, Co, out[-1]) and grid_fits(zp, geom)
    by_channel = channel_major(Co, CK)
    u = np.empty((N, Co) + out, dtype=r_dtype(W, z))
    u3 = u.reshape(N, Co, P)

    def block(k: int, slot: int) -> None:
        # the padding copy, im2col and one batched product straight into u's rows, one block of
        # examples at a time so that its columns are multiplied while in cache
        n0, n1 = blocks[k]
        fill_rows(zp, z, geom, n0, n1)
        if line:
            matmul_columns(Wb, im2col_line(zp, geom, n0, n1, bias is not None, slot), out=u3[n0:n1])
            return
        if grid:
            cols = grid_columns(zp, geom, out, n0, n1, bias is not None, slot, by_channel)
            grid_product(Wb, cols, zp.shape[3], out, u[n0:n1], slot, by_channel)
            return
        matmul_columns(Wb, _columns(zp, geom, out, n0, n1, bias is not None, slot), out=u3[n0:n1])

    run_blocks(block, len(blocks), _threads(N * CK * P, bar))
    return u


def transposed_geometry(geom: Geometry, C: int, Co: int) -> Geometry | None:
    """The geometry under which ∂J/∂z is a convolution of v, or None where col2im is used.

    With stride 1, ∂J/∂z[n, c, x] = Σ_{o,κ} W[o, c, κ] v[n, o, x + p_lo − κδ]: the flipped kernel
    W[o, c, k−1−κ] run over v padded by δ(k−1) − p_lo below and δ(k−1) − p_hi above (output size:
    the input's). Its columns are a copy, where col2im adds K strided slices into ∂J/∂z, which
    costs most when the rows are short. Measured (float32, 1 thread, Conv forward+backward, ms,
    col2im / as a convolution, median of 15 alternating rounds at load 14): Conv2D 32→48 8×8 k3,
    N 32: 3.74 / 2.98; 32→64 16×16, N 64: 22.7 / 21.2; 16→32 16×16: 4.21 / 4.22; 16→32 28×28:
    18.7 / 18.6; 3→16 32×32 k5: 8.1 / 11.5 (v's columns are C'/C times col2im's: it pays up to
    C' = 2C); Conv1D 8→16 L 256 k5, N 64: 0.87 / 1.08 (contiguous rows: col2im stays). None as
    well for a stride > 1 or a padding above δ(k−1) (v would need cropping).

    Those col2im figures are for the row-by-row col2im. Where backward runs by example, the flat
    col2im (``conv_flat``) now beats this convolution (float32, 1 thread, whole-workload medians of
    7 alternating rounds, ms): Conv2D 16→32 28×28 34.0 → 27.5, CIFAR-sized CNN 47.5 → 43.3 (average
    pooling) and 54.8 → 51.1 (max), three-stage CNN 18.1 → 17.3; it remains for backward by channel.
    """
    if geom.nd < 2 or Co > 2 * C or any(s != 1 for s in geom.stride):
        return None
    span = tuple(d * (k - 1) for k, d in zip(geom.kernel, geom.dilation))
    lo = tuple(sp - p for sp, p in zip(span, geom.pad_lo))
    hi = tuple(sp - p for sp, p in zip(span, geom.pad_hi))
    if min(lo + hi) < 0:
        return None
    return Geometry(geom.kernel, geom.stride, geom.dilation, lo, hi)


def conv_backward(
    zp: np.ndarray,
    v: np.ndarray,
    W: np.ndarray,
    geom: Geometry,
    spatial: tuple,
    out: tuple,
    grad_W: np.ndarray,
    grad_b: np.ndarray | None,
    input_grad: bool = True,
) -> np.ndarray | None:
    """ADD ∂J/∂W into ``grad_W`` and ∂J/∂b into ``grad_b`` (if any) for v = ∂J/∂u; return ∂J/∂z
    (N, C, *spatial), or None without ``input_grad`` (then no product for ∂J/∂z at all)."""
    N, C = zp.shape[:2]
    Co = W.shape[0]
    P, CK = int(np.prod(out)), C * geom.K
    dt = r_dtype(W, v)
    by_example = examples_layout(P)
    # ∂J/∂W from the columns on the padded-width grid against v on the same grid with zeros in its
    # extra columns: the copies move whole rows (``grid_layout``), and v on the grid serves ∂J/∂z's
    # flat col2im too. For ∂J/∂θ alone, copying v onto the grid costs more than the grid saves
    # (float32, 1 thread, CPU ms, grid / rows of W': 3→16 on 32×32 k5, N 32, 2.12 / 1.77 and
    # 2.15 / 1.85; 16→32 on 28×28, N 64, 7.71 / 6.87; 16→32 on 16×16 2.73 / 2.49; 32→64 on 16×16
    # 7.32 / 6.98), while the full backward gains or ties (4.68 / 4.82, 13.63 / 13.64, 14.10 / 14.56)
    grid = by_example and input_grad and grid_layout(geom, CK, Co, out[-1]) and grid_fits(zp, geom)
    grid_by_channel = grid and channel_major(Co, CK)
    line = by_example and line_fits(zp, geom)  # Conv1D at stride 1 (``conv_flat``)
    # ∂J/∂z by one add per kernel offset and example (``conv_flat``), per phase at a larger stride
    flat = input_grad and by_example and geom.nd in (1, 2)
    gt = transposed_geometry(geom, C, Co) if input_grad and not flat else None
    dzp = (
        np.empty((N, C) + geom.padded(spatial), dtype=dt) if input_grad and gt is None and not flat else None
    )
    dz = np.empty((N, C) + spatial, dtype=dt) if gt is not None else None
    Wt = W.reshape(Co, CK).T
    v3 = v.reshape(N, Co, P)
    bias = grad_b is not None
    # blocks sized by the larger of the two column sets a block holds (∂J/∂z's: C'·K rows, input size)
    v_cols = Co * geom.K * int(np.prod(spatial)) if gt is not None else 0
    bar = _parallel_from(line)
    blocks = _blocks(N, max(CK * P, v_cols), bar)
    if gt is not None and dz is not None:
        dz_as_conv = _input_grad_as_conv(v, W, gt, spatial, blocks, dz)
    n_max = max(n1 - n0 for n0, n1 in blocks)
    flat_dz = FlatInputGrad(W, geom, spatial, out, N, n_max, dt) if flat else None
    ones = bias and by_example  # ∂J/∂b as the last row of ∂J/∂W
    # per-block partials of ∂J/∂W (as (C·K, C')) and ∂J/∂b, summed below in block order: the
    # sum does not depend on which thread ran which block
    dW_parts = np.empty((len(blocks), CK + ones, Co), dtype=dt)
    db_parts = np.empty((len(blocks), Co), dtype=v.dtype) if bias and not ones else None

    def block_by_example(k: int, slot: int) -> None:
        # v[n] read in place (or copied onto the grid); ∂J/∂b is the ones row's share of Σₙ cols[n] v[n]ᵀ
        n0, n1 = blocks[k]
        vb = v3[n0:n1]
        if grid_by_channel:  # one product over the block: (C·K + 1, n·P_g) by (n·P_g, C')
            cols = grid_columns(zp, geom, out, n0, n1, bias, slot, True)
            vgc = SHARED.get("conv.vgrid", (Co,) + cols.shape[1:], v.dtype, slot)
            vg = onto_grid(v[n0:n1], zp.shape[3], vgc.transpose(1, 0, 2))
            np.matmul(cols.reshape(CK + bias, -1), vgc.reshape(Co, -1).T, out=dW_parts[k])
            on_grid = vg
        else:
            on_grid = None  # v in its own layout (the line's columns read it as it is)
            if line:
                cols, vg = im2col_line(zp, geom, n0, n1, bias, slot), vb
            elif grid:
                cols = grid_columns(zp, geom, out, n0, n1, bias, slot, False)
                vg = SHARED.get("conv.vgrid", (n1 - n0, Co, cols.shape[2]), v.dtype, slot)
                on_grid = onto_grid(v[n0:n1], zp.shape[3], vg)
            else:
                cols = _columns(zp, geom, out, n0, n1, bias, slot)
                vg = vb
            prod = SHARED.get("conv.dW", (n1 - n0, CK + bias, Co), dt, slot)
            np.matmul(cols, vg.transpose(0, 2, 1), out=prod)
            np.sum(prod, axis=0, out=dW_parts[k])
        if flat_dz is not None:
            flat_dz.block(n0, n1, v, on_grid, slot)
        elif dzp is not None:
            dcols = matmul_columns(Wt, vb, out=SHARED.get("conv.dcols", (n1 - n0, CK, P), dt, slot))
            dzp[n0:n1] = 0
            col2im_examples(dcols, geom, dzp[n0:n1], out)
        elif dz is not None:
            dz_as_conv(k, slot)

    def block_by_channel(k: int, slot: int) -> None:
        # the columns (C·K, n·P), v copied into (C', n·P), one GEMM each for ∂J/∂W and ∂J/∂cols
        n0, n1 = blocks[k]
        m = (n1 - n0) * P
        cols = im2col(zp[n0:n1], geom, out, into=SHARED.get("conv.cols", (CK, m), zp.dtype, slot))
        vt = SHARED.get("conv.v", (Co, n1 - n0, P), v.dtype, slot)
        np.copyto(vt, v3[n0:n1].swapaxes(0, 1))
        vt = vt.reshape(Co, m)
        np.matmul(cols, vt.T, out=dW_parts[k])
        if db_parts is not None:
            vt.sum(axis=1, out=db_parts[k])
        if dzp is not None:
            dcols = matmul_columns(Wt, vt, out=SHARED.get("conv.dcols", (CK, m), dt, slot))
            dzp[n0:n1] = 0
            col2im(dcols, geom, dzp[n0:n1], out)
        elif dz is not None:
            dz_as_conv(k, slot)

    run_blocks(block_by_example if by_example else block_by_channel, len(blocks), _threads(N * CK * P, bar))
    dW = np.zeros((CK + ones, Co), dtype=dt)
    for k in range(len(blocks)):
        dW += dW_parts[k]
    grad_W += from_kernel_major(dW[:CK], C, geom.kernel) if line else dW[:CK].T.reshape(W.shape)
    if grad_b is not None:
        grad_b += dW[CK] if db_parts is None else db_parts.sum(axis=0)
    if flat_dz is not None:
        return flat_dz.result
    if dzp is None:
        return dz
    return dzp[(slice(None), slice(None)) + geom.interior(spatial)]


def _input_grad_as_conv(v, W, gt: Geometry, spatial: tuple, blocks, dz: np.ndarray):
    """block(k, slot) writing ∂J/∂z of block k as the convolution of v under ``gt``
    (``transposed_geometry``): v padded in a per-thread buffer, its columns by example, one batched
    GEMM straight into dz's rows. No col2im: no zeroing, no read-modify-write of ∂J/∂z."""
    nd = gt.nd
    N, Co = v.shape[:2]
    C = W.shape[1]
    Wf = np.ascontiguousarray(np.flip(W, axis=tuple(range(2, 2 + nd))).swapaxes(0, 1)).reshape(C, -1)
    Pin = int(np.prod(spatial))
    dz3 = dz.reshape(N, C, Pin)
    nmax = max(n1 - n0 for n0, n1 in blocks)
    # keyed by the pads, so that a buffer of the same shape never has its border elsewhere
    name = f"conv.vpad{gt.pad_lo}{gt.pad_hi}"
    inner = (slice(None), slice(None)) + gt.interior(v.shape[2:])
    grid = grid_layout(gt, Co * gt.K, C, spatial[-1])
    by_channel = channel_major(C, Co * gt.K)

    def block(k: int, slot: int) -> None:
        n0, n1 = blocks[k]
        vp = SHARED.get(name, (nmax, Co) + gt.padded(v.shape[2:]), v.dtype, slot, fill=0.0)[: n1 - n0]
        vp[inner] = v[n0:n1]
        if grid:  # columns on v's padded-width grid
            cols = grid_columns(vp, gt, spatial, 0, n1 - n0, False, slot, by_channel)
            grid_product(Wf, cols, vp.shape[3], spatial, dz[n0:n1], slot, by_channel)
            return
        cols = padded_rows("conv.vcols", n1 - n0, Co * gt.K, Pin, v.dtype, slot)
        matmul_columns(Wf, im2col_examples(vp, gt, spatial, into=cols), out=dz3[n0:n1])

    return block
