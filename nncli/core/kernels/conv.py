"""The convolution's fast path: im2col, GEMMs per block of examples, col2im; blocks on threads.

``conv_forward`` and ``conv_backward`` compute what ``ConvND.reference_forward`` and
``reference_backward`` (nncli.core.layers.conv) write as the notes' equations 7.48–7.51, on
columns as in ``im2col`` (W₂ = W as (C', C·K), P output positions per example):

    forward    u[n] = W₂ cols[n] + b                         (C', P) per example
    backward   ∂J/∂W = Σₙ v[n] cols[n]ᵀ,  ∂J/∂b = Σ v,  ∂J/∂z = col2im(W₂ᵀ v)

Two layouts of the columns, chosen per shape (``examples_layout``):

- by example, (n, C·K + 1, P): each example's columns apart, with a row of ones below them so that
  the bias is one more column of W₂ (forward) and ∂J/∂b one more row of ∂J/∂W (backward). The
  forward's batched GEMM writes u in its batch-first layout directly, and v is read as it comes:
  no transposing copy of u or v and no separate bias pass.
- by channel, (C·K, n·P): ∂J/∂W of a block is ONE GEMM whose inner dimension is n·P, at the
  price of copying v into (C', n·P). Faster where the per-example products v[n] cols[n]ᵀ are too
  small for BLAS (P small against C·K); the forward always uses the first layout.

The batch is cut into blocks of examples whose columns stay near the L2/L3 cache; large work is
spread over threads (``kernels.threads``), each with BLAS on one thread. Block boundaries and the
layout depend only on the shapes, and the ∂J/∂θ partials are summed in block order, so the results
are the same bits with 1 or many threads. Temporaries come from the shared workspace, one set per
thread slot.
"""

from __future__ import annotations

import numpy as np

from nncli.core.kernels.im2col import (
    Geometry,
    col2im,
    col2im_examples,
    fill_rows,
    im2col,
    im2col_examples,
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
#: (Conv1D 8→16, L 256: 328K 1.66 vs 2.01 ms; 492K 2.32 vs 2.33; 655K 3.08 vs 2.88. Conv2D 16→32,
#: 28×28: 452K 2.5 vs 2.9 ms; 677K 3.4 vs 2.9). The MNIST-1D CNN's layers have ≤ 75K.
_MIN_PARALLEL = 1 << 19


def _blocks(N: int, per_example: int) -> list[tuple[int, int]]:
    """(n0, n1) ranges covering 0..N, about _BLOCK elements of columns each, of near-equal sizes.

    The boundaries depend only on the shapes, never on the thread count, so every block (and the
    block-ordered sum of the ∂J/∂θ partials) is computed the same way with 1 or many threads.
    """
    total = N * max(per_example, 1)
    nb = -(-total // _BLOCK)
    if total >= _MIN_PARALLEL:
        nb = max(2, nb + nb % 2)  # even, so two threads get equal work
    nb = max(1, min(N, nb))
    return [(N * i // nb, N * (i + 1) // nb) for i in range(nb)]


def _threads(total: int) -> int:
    """Threads for ``total`` elements of columns: 1 below _MIN_PARALLEL, else numpy's BLAS setting."""
    return 1 if total < _MIN_PARALLEL else workers(max(total, MIN_PARALLEL_ELEMENTS))


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
    cols = SHARED.get("conv.cols", (n1 - n0, CK + bias, P), zp.dtype, slot)
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
    Wb = _with_bias(W, bias)
    u = np.empty((N, Co) + out, dtype=r_dtype(W, z))
    u3 = u.reshape(N, Co, P)
    blocks = _blocks(N, CK * P)

    def block(k: int, slot: int) -> None:
        # the padding copy, im2col and one batched product straight into u's rows, one block of
        # examples at a time so that its columns are multiplied while in cache
        n0, n1 = blocks[k]
        fill_rows(zp, z, geom, n0, n1)
        np.matmul(Wb, _columns(zp, geom, out, n0, n1, bias is not None, slot), out=u3[n0:n1])

    run_blocks(block, len(blocks), _threads(N * CK * P))
    return u


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
    (N, C, *spatial), or None without ``input_grad`` (no Wᵀv product and no col2im then)."""
    N, C = zp.shape[:2]
    Co = W.shape[0]
    P, CK = int(np.prod(out)), C * geom.K
    dt = r_dtype(W, v)
    dzp = np.empty((N, C) + geom.padded(spatial), dtype=dt) if input_grad else None
    Wt = W.reshape(Co, CK).T
    v3 = v.reshape(N, Co, P)
    bias = grad_b is not None
    blocks = _blocks(N, CK * P)
    by_example = examples_layout(P)
    ones = bias and by_example  # ∂J/∂b as the last row of ∂J/∂W
    # per-block partials of ∂J/∂W (as (C·K, C')) and ∂J/∂b, summed below in block order: the
    # sum does not depend on which thread ran which block
    dW_parts = np.empty((len(blocks), CK + ones, Co), dtype=dt)
    db_parts = np.empty((len(blocks), Co), dtype=v.dtype) if bias and not ones else None

    def block_by_example(k: int, slot: int) -> None:
        # v[n] read in place; ∂J/∂b is the ones row's share of Σₙ cols[n] v[n]ᵀ
        n0, n1 = blocks[k]
        cols = _columns(zp, geom, out, n0, n1, bias, slot)
        vb = v3[n0:n1]
        prod = SHARED.get("conv.dW", (n1 - n0, CK + bias, Co), dt, slot)
        np.matmul(cols, vb.transpose(0, 2, 1), out=prod)
        np.sum(prod, axis=0, out=dW_parts[k])
        if dzp is not None:
            dcols = np.matmul(Wt, vb, out=SHARED.get("conv.dcols", (n1 - n0, CK, P), dt, slot))
            dzp[n0:n1] = 0
            col2im_examples(dcols, geom, dzp[n0:n1], out)

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
            dcols = np.matmul(Wt, vt, out=SHARED.get("conv.dcols", (CK, m), dt, slot))
            dzp[n0:n1] = 0
            col2im(dcols, geom, dzp[n0:n1], out)

    run_blocks(block_by_example if by_example else block_by_channel, len(blocks), _threads(N * CK * P))
    dW = np.zeros((CK + ones, Co), dtype=dt)
    for k in range(len(blocks)):
        dW += dW_parts[k]
    grad_W += dW[:CK].T.reshape(W.shape)
    if grad_b is not None:
        grad_b += dW[CK] if db_parts is None else db_parts.sum(axis=0)
    if dzp is None:
        return None
    return dzp[(slice(None), slice(None)) + geom.interior(spatial)]
