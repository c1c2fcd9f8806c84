"""The convolution's fast path: im2col, one GEMM per block of examples, col2im; blocks on threads.

``conv_forward`` and ``conv_backward`` compute what ``ConvND.reference_forward`` and
``reference_backward`` (nncli.core.layers.conv) write as the notes' equations 7.48–7.51, with the
columns laid out as in ``im2col``:

    forward    u = W₂ cols + b                 W₂ = W as (C', C·K), cols (C·K, n·P) per block
    backward   ∂J/∂W = v colsᵀ, ∂J/∂b = Σ v,  ∂J/∂z = col2im(W₂ᵀ v)

The batch is cut into blocks of examples whose columns stay near the L2/L3 cache; large work is
spread over threads (``kernels.threads``), each with BLAS on one thread. Block boundaries depend
only on the shapes and the ∂J/∂θ partials are summed in block order, so the results are the same
bits with 1 or many threads. Temporaries come from the shared workspace, one set per thread slot.
"""

from __future__ import annotations

import numpy as np

from nncli.core.kernels.im2col import Geometry, col2im, fill_rows, im2col
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


def conv_forward(
    z: np.ndarray, zp: np.ndarray, W: np.ndarray, bias: np.ndarray | None, geom: Geometry, out: tuple
) -> np.ndarray:
    """u (N, C', *out) for z (N, C, *S); ``zp`` is the padded buffer (``pad_buffer``: border set,
    interior written here block by block), which backward reads again."""
    N, C = z.shape[:2]
    Co = W.shape[0]
    P, CK = int(np.prod(out)), C * geom.K
    W2 = W.reshape(Co, CK)
    u = np.empty((N, Co) + out, dtype=r_dtype(W, z))
    b = bias.reshape((Co,) + (1,) * geom.nd) if bias is not None else None
    blocks = _blocks(N, CK * P)

    def block(k: int, slot: int) -> None:
        # the padding copy, im2col, the product and the copy back to batch-first (with the bias
        # add), one block of examples at a time so its columns are multiplied while in cache
        n0, n1 = blocks[k]
        fill_rows(zp, z, geom, n0, n1)
        cols = im2col(zp[n0:n1], geom, out, into=SHARED.get("conv.cols", (CK, (n1 - n0) * P), z.dtype, slot))
        r = np.matmul(W2, cols, out=SHARED.get("conv.u", (Co, (n1 - n0) * P), u.dtype, slot))
        r = r.reshape((Co, n1 - n0) + out).swapaxes(0, 1)
        if b is None:
            np.copyto(u[n0:n1], r)
        else:
            np.add(r, b, out=u[n0:n1])

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
    blocks = _blocks(N, CK * P)
    # per-block partials of ∂J/∂W (as (C·K, C')) and ∂J/∂b, summed below in block order: the
    # sum does not depend on which thread ran which block
    dW_parts = np.empty((len(blocks), CK, Co), dtype=dt)
    db_parts = np.empty((len(blocks), Co), dtype=v.dtype) if grad_b is not None else None

    def block(k: int, slot: int) -> None:
        # per block of examples, all in cache: the columns again, v in (C', nb·P) layout,
        # cols vᵀ, ∂J/∂cols = Wᵀ v and col2im into the block's (zeroed) rows of ∂J/∂z
        n0, n1 = blocks[k]
        m = (n1 - n0) * P
        cols = im2col(zp[n0:n1], geom, out, into=SHARED.get("conv.cols", (CK, m), zp.dtype, slot))
        vt = SHARED.get("conv.v", (Co, n1 - n0) + out, v.dtype, slot)
        np.copyto(vt, v[n0:n1].swapaxes(0, 1))
        vt = vt.reshape(Co, m)  # (C', nb·P)
        np.matmul(cols, vt.T, out=dW_parts[k])
        if db_parts is not None:
            vt.sum(axis=1, out=db_parts[k])
        if dzp is not None:
            dcols = np.matmul(Wt, vt, out=SHARED.get("conv.dcols", (CK, m), dt, slot))
            dzp[n0:n1] = 0
            col2im(dcols, geom, dzp[n0:n1], out)

    run_blocks(block, len(blocks), _threads(N * CK * P))
    dW = np.zeros((CK, Co), dtype=dt)
    for k in range(len(blocks)):
        dW += dW_parts[k]
        if db_parts is not None:
            grad_b += db_parts[k]
    grad_W += dW.T.reshape(W.shape)
    if dzp is None:
        return None
    return dzp[(slice(None), slice(None)) + geom.interior(spatial)]
