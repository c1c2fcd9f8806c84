"""The convolution for small shapes: one GEMM per product over the whole batch, shape work done once.

Where a layer's whole batch is small (the MNIST-1D CNN's Conv1D layers, the 8×8 digits' Conv2D),
the cost of ``conv.py``'s path is calls, not arithmetic: per-example products of (C', C·K) by
(C·K, P) with P = 5–36 positions, and strided copies whose inner loops run over P. Here each
product is ONE GEMM over the whole batch (notes eqs. 7.48, 7.50, 7.51; K = Πk taps, P = Π S'
output positions, W₂ = W as (C', C·K)), shown in the batch-last layout:

    zt   (C, *S_pad, N)        the padded input: one transposing copy of z
    cols (C·K + 1, P·N)        cols[(c, κ), (p, n)] = zt[c, p·s + κ·δ, n]; last row ones

    forward    u_t = [W₂ b] cols                       (C', P·N), ONE GEMM, bias included
               u (N, C', *S') ← u_t transposed
    backward   v_t (C', P·N) ← v transposed
               [∂J/∂W₂ ∂J/∂b]ᵀ = cols v_tᵀ             ONE GEMM; ∂J/∂b is the ones row's
               ∂J/∂z = Qᵀv (7.49) as one GEMM per phase of the input positions modulo the
               stride (``InputGrad``): no ∂J/∂cols, no col2im

The channels-last layout (``SmallPlan``) is the same with zt (N, *S_pad, C), cols (N·P, K·C + 1)
and the products transposed; it is chosen for examples of more than ``_CL_FROM`` bytes.

Everything derived from the input's shape (strided views, the phases' index algebra) is made once
per shape and reused, so a call is a dozen numpy calls whatever the batch. The padded input is
the one array a plan keeps from forward to backward (the columns are rebuilt from it, as
``conv.py`` does); the columns and every other temporary live in one buffer of the shared
workspace (``workspace.SHARED``), carved into views that are made again only when that buffer has
been replaced by a larger one.

Chosen per input shape by ``small_path`` (P < 64, or P ≤ 256 for a Conv2D with C·K ≥ 32; at most
2¹⁹ elements of columns; measured figures there). The GEMMs run with BLAS on one thread (``threads.run_blocks``), so the results
are the same bits with any thread setting.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from nncli.core.kernels.conv_phases import InputGrad
from nncli.core.kernels.im2col import Geometry
from nncli.core.kernels.threads import run_blocks
from nncli.core.kernels.workspace import SHARED

#: columns (N·P·C·K elements) up to which a layer takes this path: below it ``conv.py`` keeps the
#: whole batch on one thread too (its ``_MIN_PARALLEL``), so nothing is lost by leaving its blocks.
MAX_COLUMNS = 1 << 19
#: output positions per example below which this path is taken
MAX_POSITIONS = 64
#: a Conv2D whose columns are long (C·K ≥ MIN_COLUMN_2D) takes it up to MAX_POSITIONS_2D positions
#: (see ``small_path``)
MAX_POSITIONS_2D = 256
MIN_COLUMN_2D = 32
#: bytes per example (C·ΠS·itemsize) above which a plan lays its arrays out channels last. Measured
#: (float32, 1 thread, µs, forward + full backward, batch last / channels last): Conv1D 25→25 k3 s2,
#: N 100, on L 19 (1900 B) 208 / 224, on L 40 (4000 B) 377 / 422, on L 80 (8000 B) 946 / 919;
#: Conv1D 64→32 on L 20, N 64 (5120 B) 330 / 277; Conv2D k3 s2, N 64: 4→16 on 8×8 (1024 B)
#: 124 / 163, 8→16 (2048 B) 217 / 211, 16→32 (4096 B) 625 / 384, 32→64 (8192 B) 1696 / 1044.
_CL_FROM = 4000


def small_path(N: int, C: int, K: int, P: int, nd: int = 1) -> bool:
    """Whether a layer with these sizes takes this path (N examples, C channels, K taps, P positions,
    ``nd`` spatial axes).

    Measured against ``conv.py`` (float32, 1 thread, µs, forward / full backward, medians of 11
    alternating rounds at load 1.5–2): the MNIST-1D CNN's Conv1D 1→25 k5 s2 on L 40, N 100 (P 19,
    backward ∂J/∂θ only) 56 / 81 → 34 / 42; 25→25 k3 s2 on L 19 (P 10) 114 / 292 → 68 / 141; on
    L 10 (P 5) 148 / 319 → 40 / 93; the digits CNN's Conv2D 32→64 k3 s2 on 8×8 (P 16), N 32
    324 / 835 → 156 / 355, N 64 639 / 1732 → 302 / 742; Conv2D 32→48 k3 on 8×8 (P 36), N 32
    737 / 1886 → 414 / 964; Conv1D 25→25 k3 s2 on L 80 (P 40) 237 / 798 → 291 / 628. But the
    digits CNN's first layer, Conv2D 1→32 k3 on 8×8 (P 64, ∂J/∂θ only), N 64: 65 / 72 → 126 / 154:
    from P ≈ 64 the per-example GEMMs are long enough for BLAS, and the transposing copies of u
    and v (C'·P·N floats) cost more than they save.

    A Conv2D with long columns (C·K ≥ 32) gains up to 256 positions, where ``conv.py`` copies rows
    of W' floats one by one (float32, 1 thread, µs, forward + full backward, conv.py → this path,
    25 alternating rounds): 32→48 k3 p1 on 8×8 (P 64), N 16: 1334 → 775; 16→16 on 8×8, N 32:
    890 → 419; 8→16: 551 → 432; 32→48 on 10×10 (P 100), N 16: 1655 → 1212; 16→32 on 12×12
    (P 144): 869 → 656; 4→16 on 12×12 (C·K 36): 312 → 223; 16→32 on 16×16 (P 256), N 8: 844 → 691.
    Not a Conv1D, whose rows conv.py copies whole: 8→16 k5 on L 256, N 32: 476 → 674; 25→25 k3 on
    L 128: 582 → 682.
    """
    if N <= 0 or N * P * C * K > MAX_COLUMNS:
        return False
    return P < MAX_POSITIONS or (nd == 2 and P <= MAX_POSITIONS_2D and C * K >= MIN_COLUMN_2D)


def _view(a: np.ndarray, shape: tuple) -> np.ndarray:
    """``a`` with its axes split to ``shape``, as a view (raises rather than copies)."""
    v = a.view()
    v.shape = shape
    return v


def _carve(flat: np.ndarray, shapes: list[tuple]) -> list[np.ndarray]:
    """Consecutive C-contiguous arrays of ``shapes`` in the 1-d ``flat``."""
    out, at = [], 0
    for shape in shapes:
        n = math.prod(shape)
        out.append(flat[at : at + n].reshape(shape))
        at += n
    return out


class SmallPlan:
    """The buffers, strided views and index algebra of one layer for one input shape and dtype.

    Made the first time the layer sees that shape; ``forward`` and ``backward`` then only copy into
    and multiply arrays. Two layouts (``channels_last``):

    - batch last: zt (C, *S_pad, N), cols (C·K + 1, P·N), u_t = [W₂ b] cols (C', P·N): every
      copy's inner loop runs over the batch. Best where an example is small (C·ΠS ≤ ``_CL_FROM``).
    - channels last: zt (N, *S_pad, C), cols (N·P, K·C + 1) with columns (κ, c), u_rows = cols
      [W_κc; b] (N·P, C'): the transposing copies stay within one example, whose rows are
      contiguous, where batch last gathers each element from another example's row (a stride of
      C·ΠS floats). Best for larger examples (the digits CNN's 32×8×8).

    ``zt`` (the padded input) is kept from forward to backward, the columns rebuilt from it; the
    temporaries (``_views``) are carved from one buffer of the shared workspace, and carved again
    when that buffer has been replaced by a larger one.
    """

    def __init__(self, geom: Geometry, z_shape: tuple, Co: int, bias: bool, dtype) -> None:
        N, C = z_shape[:2]
        self.geom, self.N, self.C, self.Co, self.bias = geom, N, C, Co, bias
        self.spatial = tuple(z_shape[2:])
        self.out = geom.out_size(self.spatial, "Conv")
        self.dtype = np.dtype(dtype)
        self.channels_last = C * math.prod(self.spatial) * self.dtype.itemsize > _CL_FROM
        nd, cl = geom.nd, self.channels_last
        CK, PN = C * geom.K, math.prod(self.out) * N
        # (N, C, *S) ↔ the buffers' order (C, *S, N) or (N, *S, C)
        self.to_buf = (0, *range(2, 2 + nd), 1) if cl else (*range(1, 2 + nd), 0)
        self.from_buf = (0, nd + 1, *range(1, nd + 1)) if cl else (nd + 1, *range(nd + 1))
        self.zt = np.zeros(self._buf(N, geom.padded(self.spatial), C), self.dtype)  # border stays 0
        self.Wb = np.empty((CK + bias, Co) if cl else (Co, CK + bias), self.dtype)  # [W b], rewritten
        self.grad = InputGrad.make(geom, self.spatial, self.out)
        # the columns, then u (forward) or v (backward) as rows, then backward's ∂J/∂z temporaries
        self.scratch = [(PN, CK + bias) if cl else (CK + bias, PN), (PN, Co) if cl else (Co, PN)]
        if self.grad.padded:
            sizes = tuple(lo + P + hi for (lo, hi), P in zip(self.grad.margins, self.out))
            self.scratch.append(self._buf(N, sizes, Co))
        # channels last with several phases: their products are gathered in this layout, then
        # ∂J/∂z transposed from it once; copied straight into their strided positions of ∂J/∂z,
        # numpy's inner loops would run over the last axis's Q positions, s apart (``_input_grad``)
        self.staged = cl and len(self.grad.phases) > 1
        if self.staged:
            self.scratch.append(self._buf(N, self.spatial, C))
        for combo in self.grad.phases:
            T, Q = math.prod(a.T for a in combo), math.prod(a.Q for a in combo)
            if T:
                A, B, prod_ = (T * Co, C), (Q * N, T * Co), (Q * N, C)
                self.scratch += [A, B, prod_] if cl else [A[::-1], B[::-1], prod_[::-1]]
        self.scratch_size = sum(math.prod(shape) for shape in self.scratch)
        self._base: object = None  # the shared buffer the views were carved from
        self._v: dict = {}

    def _buf(self, N: int, spatial: tuple, C: int) -> tuple:
        """The shape (N, *spatial, C) or (C, *spatial, N) of this layout."""
        return (N,) + spatial + (C,) if self.channels_last else (C,) + spatial + (N,)

    def _strided(self, a: np.ndarray, batch: tuple, space: tuple, chan: tuple) -> np.ndarray:
        """A read-only view of ``a`` (one of this layout's buffers) with the axes (shape, stride)
        of ``batch``, then ``space`` (the spatial ones), then ``chan``, in this layout's order."""
        parts = (batch, space, chan) if self.channels_last else (chan, space, batch)
        shape = tuple(n for part in parts for n, _ in part)
        strides = tuple(st for part in parts for _, st in part)
        return as_strided(a, shape, strides, writeable=False)

    # -- the views, made once per shared buffer ---------------------------------------------
    def _views(self) -> dict:
        """The scratch views of this call: from the shared buffer, remade only if it was replaced."""
        flat = SHARED.get("conv_small", (self.scratch_size,), self.dtype)
        if flat.base is not self._base or not self._v:
            self._base, self._v = flat.base, self._make_views(_carve(flat, self.scratch))
        return self._v

    def _make_views(self, arrays: list[np.ndarray]) -> dict:
        g, N, C, Co, out, cl = (
            self.geom,
            self.N,
            self.C,
            self.Co,
            self.out,
            self.channels_last,
        )
        cols, rows, *rest = arrays
        rows_nd = _view(rows, self._buf(N, out, Co))
        v_pad = rest.pop(0) if self.grad.padded else rows_nd
        stage = rest.pop(0) if self.staged else None
        st = self.zt.strides
        sp_st = st[1:-1]
        b_st, c_st = (st[0], st[-1]) if cl else (st[-1], st[0])
        windows = self._strided(  # zt at p·s + κ·δ: (N, *out, *k, C) or (C, *k, *out, N)
            self.zt,
            ((N, b_st),),
            tuple(zip(out, (x * s for x, s in zip(sp_st, g.stride))))
            + tuple(zip(g.kernel, (x * d for x, d in zip(sp_st, g.dilation))))
            if cl
            else tuple(zip(g.kernel, (x * d for x, d in zip(sp_st, g.dilation))))
            + tuple(zip(out, (x * s for x, s in zip(sp_st, g.stride)))),
            ((C, c_st),),
        )
        CK = C * g.K
        v: dict[str, Any] = {
            "cols": cols,
            "cols_in": _view(cols[:, :CK], (N,) + out + g.kernel + (C,))
            if cl
            else _view(cols[:CK], (C,) + g.kernel + out + (N,)),
            "windows": windows,
            "rows": rows,
            "rows_nd": rows_nd,
            "v_pad": v_pad,
            "v_in": v_pad[
                (slice(None),) + tuple(slice(lo, lo + P) for (lo, _), P in zip(self.grad.margins, out))
            ],
        }
        if stage is not None:
            v["stage"], v["stage_out"] = stage, stage.transpose(self.from_buf)
        v["phases"] = [self._phase_views(combo, v_pad, rest) for combo in self.grad.phases]
        return v

    def _phase_views(self, combo: tuple, v_pad: np.ndarray, rest: list) -> tuple:
        """(∂J/∂z's index of the phase's positions, and None where no tap reads them, else the
        weights' index and order, A, A_in, B, B_in, v_pad shifted, the product, its transpose)."""
        nd, N, C, Co, cl = self.geom.nd, self.N, self.C, self.Co, self.channels_last
        # the phase's positions: in the staging buffer (this layout's order), else in ∂J/∂z
        spatial = tuple(a.where for a in combo)
        where = (slice(None),) + spatial if self.staged else (slice(None), slice(None)) + spatial
        if not all(a.T for a in combo):
            return where, None
        A, B, prod_ = rest[:3]
        del rest[:3]
        T, Q = tuple(a.T for a in combo), tuple(a.Q for a in combo)
        sp = v_pad.strides
        sp_st, b_st, c_st = sp[1:-1], (sp[0] if cl else sp[-1]), (sp[-1] if cl else sp[0])
        start = tuple(lo - a.j_first for (lo, _), a in zip(self.grad.margins, combo))
        base = v_pad[(slice(None),) + tuple(slice(s0, None) for s0 in start)]
        # v_pad[q − j_t + margin]: (N, *Q, *T, C') or (*T, C', *Q, N)
        taps = tuple(zip(T, (a.j_step * s for a, s in zip(combo, sp_st))))
        space = tuple(zip(Q, sp_st))
        if cl:
            shifted = self._strided(base, ((N, b_st),), space, taps + ((Co, c_st),))
        else:
            shifted = as_strided(
                base,
                T + (Co,) + Q + (N,),
                tuple(s for _, s in taps) + (c_st,) + sp_st + (b_st,),
                writeable=False,
            )
        W_index = (slice(None), slice(None)) + tuple(a.taps for a in combo)
        if cl:  # W (C', C, *T) → A (*T, C', C); product (N·Q, C) = B A
            W_order = (*range(2, 2 + nd), 0, 1)
            A_in, B_in = _view(A, T + (Co, C)), _view(B, (N,) + Q + T + (Co,))
            result = _view(prod_, (N,) + Q + (C,))
            if not self.staged:
                result = result.transpose(0, nd + 1, *range(1, nd + 1))
        else:  # W → A (C, *T, C'); product (C, Q·N) = A B
            W_order = (1, *range(2, 2 + nd), 0)
            A_in, B_in = _view(A, (C,) + T + (Co,)), _view(B, T + (Co,) + Q + (N,))
            result = _view(prod_, (C,) + Q + (N,))
            if not self.staged:
                result = result.transpose(nd + 1, 0, *range(1, nd + 1))
        return where, (W_index, W_order, A, A_in, B, B_in, shifted, prod_, result)

    # -- forward and backward ------------------------------------------------------------------
    def _interior(self) -> np.ndarray:
        inner = self.geom.interior(self.spatial)
        return self.zt[(slice(None),) + inner]

    def _columns(self, v: dict) -> np.ndarray:
        np.copyto(v["cols_in"], v["windows"])
        if self.bias:  # the ones, rewritten: other layers use the shared buffer too
            v["cols"][(slice(None), -1) if self.channels_last else -1] = 1
        return v["cols"]

    def forward(self, z: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """u (N, C', *out) = W ⋆ z + b (7.50, 7.51), as one GEMM over the batch."""
        nd, CK, Wb = self.geom.nd, self.C * self.geom.K, self.Wb
        np.copyto(self._interior(), z.transpose(self.to_buf))
        v = self._views()
        cols, rows = self._columns(v), v["rows"]
        if self.channels_last:  # rows (κ, c): W (C', C, *k) → (*k, C, C')
            np.copyto(
                _view(Wb[:CK], self.geom.kernel + (self.C, self.Co)), W.transpose(*range(2, 2 + nd), 1, 0)
            )
            if b is not None:
                Wb[CK] = b
            run_blocks(lambda k, slot: np.matmul(cols, Wb, out=rows), 1, 1)
        else:
            np.copyto(Wb[:, :CK], W.reshape(self.Co, CK))
            if b is not None:
                Wb[:, CK] = b
            run_blocks(lambda k, slot: np.matmul(Wb, cols, out=rows), 1, 1)
        u = np.empty((self.N, self.Co) + self.out, self.dtype)
        np.copyto(u, v["rows_nd"].transpose(self.from_buf))
        return u

    def backward(
        self,
        v: np.ndarray,
        W: np.ndarray,
        grad_W: np.ndarray,
        grad_b: np.ndarray | None,
        input_grad: bool,
    ) -> np.ndarray | None:
        """ADD ∂J/∂W and ∂J/∂b (if any) for v = ∂J/∂u (N, C', *out); return ∂J/∂z or None."""
        nd, CK, cl = self.geom.nd, self.C * self.geom.K, self.channels_last
        views = self._views()
        cols = self._columns(views)
        np.copyto(views["rows_nd"], v.transpose(self.to_buf))
        rows = views["rows"]
        dW = np.empty((CK + self.bias, self.Co), self.dtype)  # [∂J/∂W ∂J/∂b]ᵀ
        dz = np.empty((self.N, self.C) + self.spatial, self.dtype) if input_grad else None

        def products(k: int, slot: int) -> None:
            np.matmul(cols.T, rows, out=dW) if cl else np.matmul(cols, rows.T, out=dW)
            if dz is not None:
                self._input_grad(views, W, dz)

        run_blocks(products, 1, 1)
        if cl:  # rows (κ, c) → (C', C, *k)
            grad_W += _view(dW[:CK], self.geom.kernel + (self.C, self.Co)).transpose(nd + 1, nd, *range(nd))
        else:
            grad_W += dW[:CK].T.reshape(grad_W.shape)
        if grad_b is not None:
            grad_b += dW[CK]
        return dz

    def _input_grad(self, views: dict, W: np.ndarray, dz: np.ndarray) -> None:
        """dz ← ∂J/∂z, one GEMM per phase (``InputGrad``); BLAS is already on one thread.

        Channels last with several phases, the products go to their positions of a buffer in
        that order (inner loops over C), transposed into dz at the end. Measured (digits CNN's
        Conv2D 32→64 k3 s2, N 64, 4 phases, µs): the phases' copies into dz 104, staged 26 + 33,
        forward + backward 982 → 946. Batch last, the copies into dz already run over N: staging
        measured a tie (MNIST-1D CNN's second and third layers: 194 → 190, 100 → 104).
        """
        if self.grad.padded:  # the shared buffer held something else: zero margins, v inside
            views["v_pad"].fill(0)
            np.copyto(views["v_in"], views["rows_nd"])
        out = views["stage"] if self.staged else dz
        for where, phase in views["phases"]:
            if phase is None:
                out[where] = 0
                continue
            W_index, order, A, A_in, B, B_in, shifted, prod_, result = phase
            np.copyto(A_in, W[W_index].transpose(order))
            np.copyto(B_in, shifted)
            if self.channels_last:
                np.matmul(B, A, out=prod_)
            else:
                np.matmul(A, B, out=prod_)
            np.copyto(out[where], result)
        if self.staged:
            np.copyto(dz, views["stage_out"])
