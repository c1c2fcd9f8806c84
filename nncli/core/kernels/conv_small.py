"""The convolution for small shapes: batch-last columns, one GEMM per product, shape work done once.

Where a layer's whole batch is small (the MNIST-1D CNN's Conv1D layers, the 8×8 digits' Conv2D),
the cost of ``conv.py``'s path is calls, not arithmetic: per-example products of (C', C·K) by
(C·K, P) with P = 5–20 positions, and strided copies whose inner loops run over P. Here the batch
axis is the last one of every array the kernel builds, so each copy's inner loop runs over the N
examples, and each product is ONE GEMM over the whole batch (notes eqs. 7.48, 7.50, 7.51; K = Πk
taps, P = Π S' output positions, W₂ = W as (C', C·K)):

    zt   (C, *S_pad, N)        the padded input, batch last: one transposing copy of z
    cols (C·K + 1, P·N)        cols[(c, κ), (p, n)] = zt[c, p·s + κ·δ, n]; last row ones

    forward    u_t = [W₂ b] cols                       (C', P·N), ONE GEMM, bias included
               u (N, C', *S') ← u_t transposed
    backward   v_t (C', P·N) ← v transposed
               [∂J/∂W₂ ∂J/∂b] = v_t colsᵀ              ONE GEMM; ∂J/∂b is the ones row's column
               ∂J/∂cols = W₂ᵀ v_t                      ONE GEMM (only with the input gradient)
               ∂J/∂z = col2im(∂J/∂cols), transposed to (N, C, *S)                   (Qᵀv, 7.49)

col2im adds each tap's rows of ∂J/∂cols back where forward read them: K adds, into the padded
input's positions split by phase modulo the stride (``_Phases``), where each tap's rows are
contiguous runs. Everything derived from the input's shape (buffers, strided views, the taps' and
the phases' views) is made once per shape (``SmallPlan``) and reused, so a call is a dozen numpy
calls whatever the batch.

Chosen per input shape by ``small_path`` (P < 64, at most 2¹⁹ elements of columns; measured
figures there). The GEMMs run with BLAS on one thread (``threads.run_blocks``), so the results
are the same bits with any thread setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product

import numpy as np
from numpy.lib.stride_tricks import as_strided

from nncli.core.kernels.im2col import Geometry
from nncli.core.kernels.threads import run_blocks

#: columns (N·P·C·K elements) up to which a layer takes this path: below it ``conv.py`` keeps the
#: whole batch on one thread too (its ``_MIN_PARALLEL``), so nothing is lost by leaving its blocks.
MAX_COLUMNS = 1 << 19
#: output positions per example below which this path is taken
MAX_POSITIONS = 64


def small_path(N: int, C: int, K: int, P: int) -> bool:
    """Whether a layer with these sizes takes this path (N examples, C channels, K taps, P positions).

    Measured against ``conv.py`` (float32, 1 thread, µs, forward / full backward, medians of 15
    alternating rounds at load 1.5–2.5): the MNIST-1D CNN's Conv1D 1→25 k5 s2 on L 40, N 100 (P 19,
    backward ∂J/∂θ only) 35 / 47 → 25 / 22; 25→25 k3 s2 on L 19 (P 10) 106 / 246 → 62 / 134; on
    L 10 (P 5) 87 / 190 → 28 / 83; the digits CNN's Conv2D 32→64 k3 s2 on 8×8, N 32 (P 16)
    307 / 782 → 225 / 391, N 64 599 / 1518 → 559 / 789; Conv2D 32→48 k3 on 8×8, N 32 (P 36)
    671 / 1634 → 564 / 995. But its first layer, Conv2D 1→32 k3 on 8×8 (P 64, ∂J/∂θ only),
    42 / 46 → 47 / 75: from P ≈ 64 the per-example GEMMs are long enough for BLAS, and the
    transposing copies of u and v (C'·P·N floats) cost more than they save.
    """
    return N > 0 and P < MAX_POSITIONS and N * P * C * K <= MAX_COLUMNS


def _view(a: np.ndarray, shape: tuple) -> np.ndarray:
    """``a`` with its axes split to ``shape``, as a view (raises rather than copies)."""
    v = a.view()
    v.shape = shape
    return v


@dataclass
class SmallPlan:
    """The buffers and strided views of one layer for one input shape and dtype.

    Made by ``SmallPlan.make`` the first time the layer sees that shape; ``forward`` and ``backward``
    then only copy into and multiply these arrays. ``cols`` is kept from forward to backward.
    """

    geom: Geometry
    N: int
    C: int
    Co: int
    spatial: tuple
    out: tuple
    bias: bool
    dtype: np.dtype
    zt_in: np.ndarray  # the interior of the padded batch-last input, (C, *S, N)
    windows: np.ndarray  # (C, *k, *out, N) strided view of the padded input
    cols: np.ndarray  # (C·K + bias, P·N)
    cols_in: np.ndarray  # cols[:C·K] as (C, *k, *out, N)
    Wb: np.ndarray  # (C', C·K + bias): W₂ and b
    u_t: np.ndarray  # (C', P·N)
    v_t: np.ndarray  # (C', P·N)
    dW: np.ndarray  # (C·K + bias, C'): [∂J/∂W₂ ∂J/∂b]ᵀ
    scratch: dict = field(default_factory=dict)  # backward's ∂J/∂z buffers, made on first use

    @classmethod
    def make(cls, geom: Geometry, z_shape: tuple, Co: int, bias: bool, dtype) -> SmallPlan:
        N, C = z_shape[:2]
        spatial = tuple(z_shape[2:])
        out = geom.out_size(spatial, "Conv")
        P, CK = math.prod(out), geom.K * C
        dtype = np.dtype(dtype)
        zt = np.zeros((C,) + geom.padded(spatial) + (N,), dtype)  # border zero for good
        st = zt.strides
        windows = as_strided(
            zt,
            (C,) + geom.kernel + out + (N,),
            (st[0],)
            + tuple(x * d for x, d in zip(st[1:-1], geom.dilation))
            + tuple(x * s for x, s in zip(st[1:-1], geom.stride))
            + (st[-1],),
            writeable=False,
        )
        cols = np.empty((CK + bias, P * N), dtype)
        if bias:
            cols[CK] = 1  # never overwritten: the copies write cols[:CK]
        return cls(
            geom=geom,
            N=N,
            C=C,
            Co=Co,
            spatial=spatial,
            out=out,
            bias=bias,
            dtype=dtype,
            zt_in=zt[(slice(None),) + geom.interior(spatial)],
            windows=windows,
            cols=cols,
            cols_in=_view(cols[:CK], (C,) + geom.kernel + out + (N,)),
            Wb=np.empty((Co, CK + bias), dtype),
            u_t=np.empty((Co, P * N), dtype),
            v_t=np.empty((Co, P * N), dtype),
            dW=np.empty((CK + bias, Co), dtype),
        )

    @property
    def _batch_last(self) -> tuple:
        """Axis order (N, C, *S) → (C, *S, N)."""
        return (*range(1, 2 + self.geom.nd), 0)

    @property
    def _batch_first(self) -> tuple:
        """Axis order (C, *S, N) → (N, C, *S)."""
        return (1 + self.geom.nd, *range(1 + self.geom.nd))

    def forward(self, z: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """u (N, C', *out) = W ⋆ z + b (7.50, 7.51), as one GEMM over the batch."""
        np.copyto(self.zt_in, z.transpose(self._batch_last))
        np.copyto(self.cols_in, self.windows)
        CK = self.C * self.geom.K
        np.copyto(self.Wb[:, :CK], W.reshape(self.Co, CK))
        if b is not None:
            self.Wb[:, CK] = b
        run_blocks(self._forward_product, 1, 1)
        u = np.empty((self.N, self.Co) + self.out, self.dtype)
        np.copyto(u, _view(self.u_t, (self.Co,) + self.out + (self.N,)).transpose(self._batch_first))
        return u

    def _forward_product(self, k: int, slot: int) -> None:
        np.matmul(self.Wb, self.cols, out=self.u_t)

    def backward(
        self,
        v: np.ndarray,
        grad_W: np.ndarray,
        grad_b: np.ndarray | None,
        input_grad: bool,
    ) -> np.ndarray | None:
        """ADD ∂J/∂W and ∂J/∂b (if any) for v = ∂J/∂u (N, C', *out); return ∂J/∂z or None."""
        np.copyto(_view(self.v_t, (self.Co,) + self.out + (self.N,)), v.transpose(self._batch_last))
        CK = self.C * self.geom.K
        dcols = self._scratch("dcols", (CK, self.v_t.shape[1])) if input_grad else None

        def products(k: int, slot: int) -> None:
            np.matmul(self.cols, self.v_t.T, out=self.dW)
            if dcols is not None:
                np.matmul(self.Wb[:, :CK].T, self.v_t, out=dcols)

        run_blocks(products, 1, 1)
        grad_W += self.dW[:CK].T.reshape(grad_W.shape)
        if grad_b is not None:
            grad_b += self.dW[CK]
        if dcols is None:
            return None
        return self._col2im(dcols)

    def _scratch(self, name: str, shape: tuple) -> np.ndarray:
        a = self.scratch.get(name)
        if a is None:
            a = self.scratch[name] = np.empty(shape, self.dtype)
        return a

    def _col2im(self, dcols: np.ndarray) -> np.ndarray:
        """∂J/∂z (N, C, *S): each tap's rows of ∂J/∂cols added back where forward read them (the
        adjoint of the windows), then transposed to batch first.

        The sums go into the padded input's positions split by phase modulo the stride
        (``_Phases``): tap κ reads positions p·s + κ·δ, all in phase κ·δ mod s, so its rows land on
        a contiguous run of P·N floats of that phase's buffer (1-d), where in (C, L_pad, N) they
        would be P runs of N, s·N apart. Measured (float32, 25 channels, P 10, N 100, one add):
        8.9 µs strided, 3.7 µs as (C, P·N) rows.
        """
        ph = self.scratch.get("phases")
        if ph is None:
            ph = self.scratch["phases"] = _Phases.make(self, dcols)
        ph.buf.fill(0)
        for target, tap in ph.taps:
            np.add(target, tap, out=target)
        dz = np.empty((self.N, self.C) + self.spatial, self.dtype)
        for where, src in ph.copies:
            np.copyto(dz[where], src)
        return dz


@dataclass
class _Phases:
    """∂J/∂z_pad split by phase: buf[r, c, q, n] = ∂J/∂z_pad[n, c, q·s + r] (per spatial axis),
    (*s, C, *Q, N); ``taps``: (target view, ∂J/∂cols rows) per kernel offset."""

    buf: np.ndarray
    taps: list
    copies: list

    @classmethod
    def make(cls, plan: SmallPlan, dcols: np.ndarray) -> _Phases:
        g, nd = plan.geom, plan.geom.nd
        d = _view(dcols, (plan.C,) + g.kernel + plan.out + (plan.N,))
        offsets = [tuple(k * dl for k, dl in zip(kappa, g.dilation)) for kappa, _ in g.offsets(plan.out)]
        Q = tuple(
            max(
                max(o[a] // g.stride[a] for o in offsets) + plan.out[a],
                -(-(plan.spatial[a] + g.pad_lo[a]) // g.stride[a]),
            )
            for a in range(nd)
        )
        buf = np.empty(g.stride + (plan.C,) + Q + (plan.N,), plan.dtype)
        taps = []
        for (kappa, _), off in zip(g.offsets(plan.out), offsets):
            phase = tuple(o % s for o, s in zip(off, g.stride))
            runs = tuple(slice(o // s, o // s + P) for o, s, P in zip(off, g.stride, plan.out))
            taps.append(_coalesced(buf[phase + (slice(None),) + runs], d[(slice(None),) + kappa]))
        return cls(buf, taps, cls._copies(plan, buf))

    @staticmethod
    def _copies(plan: SmallPlan, buf: np.ndarray) -> list:
        """(dz's positions x ≡ r' mod s as an index, the phase buffer's rows holding them) per r'."""
        g, nd = plan.geom, plan.geom.nd
        per_axis = []
        for a in range(nd):
            s, L, lo = g.stride[a], plan.spatial[a], g.pad_lo[a]
            opts = []
            for r_out in range(min(s, L)):
                t = r_out + lo  # padded position of x = r_out
                count = len(range(r_out, L, s))
                opts.append((slice(r_out, L, s), t % s, slice(t // s, t // s + count)))
            per_axis.append(opts)
        out = []
        for combo in product(*per_axis):
            where = (slice(None), slice(None)) + tuple(c[0] for c in combo)
            src = buf[tuple(c[1] for c in combo) + (slice(None),) + tuple(c[2] for c in combo)]
            out.append((where, src.transpose(nd + 1, *range(nd + 1))))
        return out


def _coalesced(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Views of same-shaped ``a`` and ``b`` with adjacent axes merged wherever both allow it.

    numpy's ufuncs cost a few µs more per call on arrays of 3+ axes than on 2 (measured: an add of
    (25, 10, 100) float32 rows 6.9 µs, of the same as (25, 1000) 3.7 µs), so the taps' adds are
    handed the fewest axes their strides permit.
    """
    shape, sa, sb = list(a.shape), list(a.strides), list(b.strides)
    i = len(shape) - 1
    while i > 0:
        if sa[i - 1] == sa[i] * shape[i] and sb[i - 1] == sb[i] * shape[i]:
            shape[i - 1 : i + 1] = [shape[i - 1] * shape[i]]
            sa[i - 1 : i + 1] = [sa[i]]
            sb[i - 1 : i + 1] = [sb[i]]
        i -= 1
    return as_strided(a, shape, sa), as_strided(b, shape, sb, writeable=False)
