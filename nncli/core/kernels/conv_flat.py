"""Convolutions on the flat padded input: rows in kernel-offset order, so that im2col (Conv1D at
stride 1) and col2im (Conv1D and Conv2D) are one copy or one add per kernel offset and example.
The arithmetic is ``conv.py``'s (the notes' eqs. 7.48–7.51 as columns: ∂J/∂z = col2im(W₂ᵀ v));
only the layout of the columns and the order of the copies change.

``im2col_examples`` lays an example's columns out as rows (c, κ) of P floats, and ``col2im_examples``
adds them back row by row (by rows of W' floats in 2-d): numpy runs one inner loop per row, ~0.1 µs
each besides its work. Conv1D 8→16, L 256, k 5, 32 examples: 224 µs for col2im, of which 5 × 35 µs
are the adds of 65 K floats each.

At stride 1, an output position p and a kernel offset κ read the input at p + s_κ in the example's
padded input read flat (s_κ = κδ in 1-d, κ_h δ_h W_pad + κ_w δ_w in 2-d, with p = y·W_pad + x on
the padded-width grid). So with rows ordered (κ, c) and each row as long as a channel's padded plane
(``plane``: Lp, or H_pad·W_pad), the C rows of one offset κ form ONE slice of the flat example:

    Conv1D:  cols[n][(κ, c), q] = zp_flat[n, c·Lp + q + κδ],   q < Lp            (n, K·C [+ 1], Lp)

and the products read the first P columns of each row only (a strided view; BLAS takes the row
stride). The columns q ≥ P hold the next channel's first floats and are never read.

Backward's ∂J/∂cols come in the same layout, written by the product into the first P (Conv1D) or
P_g (Conv2D, v on the grid with zeros between its rows) columns of rows whose remaining columns stay
zero; col2im is then, for each κ, one add of a whole example:

    dzp_flat[n, s_κ : s_κ + C·plane − s_max] += dcols_flat[n, κ, : C·plane − s_max]

where the zero columns land on other positions and change nothing. The first offset is a copy
instead of an add onto zeros (the same values; only a −0 may become +0). Each position receives its
K terms in the order of the kernel offsets, as in ``col2im_examples``.

At a stride s > 1 the same holds on each phase of the padded positions modulo s (``Phases``): the
phase planes are ⌈padded / s⌉ long per axis, each gets the flat adds of its own kernel offsets, and
one strided copy per phase writes ∂J/∂z.

The rows (κ, c) need W₂'s columns in the same order (``kernel_major``), and the Conv1D's ∂J/∂W
comes back in it (``from_kernel_major``). Measured (float32, 1 thread, 32 examples of Conv1D 8→16,
L 256, k 5): col2im 224 → 46 µs. Strided, forward + backward of one layer, medians of 7 alternating
rounds: Conv2D 16→32 k3 s2 on 32×32, N 64, 16.7 → 14.7 ms; 32→64 42.6 → 38.4; 64→128 on 16×16
34.8 → 33.5; 3→16 k5 s2 on 64×64, N 32, 10.1 → 8.7; Conv1D 16→32 k5 s2 on L 512 7.06 → 5.82.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np

from nncli.core.kernels.gemm import matmul_columns
from nncli.core.kernels.im2col import Geometry, onto_grid
from nncli.core.kernels.workspace import SHARED


def line_fits(zp: np.ndarray, geom: Geometry) -> bool:
    """Whether Conv1D's columns can be laid out on the line: stride 1, each example's rows contiguous."""
    if geom.nd != 1 or geom.stride != (1,):
        return False
    item = zp.itemsize
    return (
        zp.strides[2] == item
        and zp.strides[1] == zp.shape[2] * item
        and zp.strides[0] == zp.shape[1] * zp.strides[1]
    )


def kernel_major(W: np.ndarray) -> np.ndarray:
    """W (C', C, *k) as (K·C, C'): rows in (κ, c) order, the flat layout's W₂ᵀ."""
    nd = W.ndim - 2
    return W.transpose(*range(2, 2 + nd), 1, 0).reshape(-1, W.shape[0])


def from_kernel_major(dW2: np.ndarray, C: int, kernel: tuple[int, ...]) -> np.ndarray:
    """∂J/∂W₂ as (K·C, C'), rows in (κ, c) order, back to W's shape (C', C, *k)."""
    nd = len(kernel)
    return dW2.reshape(*kernel, C, -1).transpose(nd + 1, nd, *range(nd))


def shifts(geom: Geometry, padded: tuple[int, ...]) -> list[int]:
    """s_κ for each kernel offset κ (in ``Geometry.offsets``' order): where the offset's window
    starts in a channel's padded plane read flat, at stride 1."""
    steps = [math.prod(padded[i + 1 :]) * d for i, d in enumerate(geom.dilation)]
    return [sum(k * s for k, s in zip(kappa, steps)) for kappa in product(*(range(k) for k in geom.kernel))]


def im2col_line(zp: np.ndarray, geom: Geometry, n0: int, n1: int, bias: bool, slot: int) -> np.ndarray:
    """Conv1D: the examples n0..n1 of the padded input (N, C, Lp) as columns (n, k·C [+ 1], P), a
    view of the first P columns of rows Lp long, the last row ones when ``bias``."""
    C, Lp = zp.shape[1:]
    k, delta = geom.kernel[0], geom.dilation[0]
    P = Lp - delta * (k - 1)
    n = n1 - n0
    cols = SHARED.get("conv.lcols", (n, k * C + bias, Lp), zp.dtype, slot)
    src = zp[n0:n1].reshape(n, C * Lp)
    for kappa in range(k):
        shift = kappa * delta
        # the last row's final ``shift`` columns lie past the example's end: left as they are, unread
        dest = cols[:, kappa * C : (kappa + 1) * C].reshape(n, C * Lp)
        np.copyto(dest[:, : C * Lp - shift], src[:, shift:])
    if bias:
        cols[:, k * C] = 1
    return cols[:, :, :P]


def flat_dcols(K: int, C: int, plane: int, used: int, n: int, n_max: int, dtype, slot: int) -> np.ndarray:
    """A (n, K·C, plane) buffer for ∂J/∂cols whose columns from ``used`` on are zero: write the
    product into its ``[..., :used]``. Keyed by ``plane − used`` so that no user of the same buffer
    writes those columns, and sized for ``n_max`` examples so that blocks of other sizes do not
    reset it."""
    return SHARED.get(f"conv.dflat{plane - used}", (n_max, K * C, plane), dtype, slot, fill=0.0)[:n]


def col2im_flat(dcols: np.ndarray, offsets: list[int], dzp: np.ndarray) -> np.ndarray:
    """Adjoint of the flat columns: dzp (n, C, *padded) ← the K slices of dcols (n, K·C, plane), one
    per entry of ``offsets`` (``shifts``), whose unwritten columns are zero. dzp's previous values
    are overwritten, not added to."""
    n, C = dzp.shape[:2]
    size = math.prod(dzp.shape[1:])
    span = size - max(offsets)
    flat = dzp.reshape(n, size)
    d = dcols.reshape(n, len(offsets), size)
    np.copyto(flat[:, :span], d[:, 0, :span])
    flat[:, span:] = 0
    for k, shift in enumerate(offsets[1:], start=1):
        flat[:, shift : shift + span] += d[:, k, :span]
    return dzp


@dataclass(frozen=True)
class Phases:
    """A strided convolution's padded input split by position modulo the stride, for ∂J/∂z.

    With stride s, output position y and kernel offset κ read the padded input at s·y + κδ =
    s·(y + ⌊κδ/s⌋) + (κδ mod s): the offsets whose κδ mod s is a form, on the phase plane of the
    positions ≡ a (mod s), a convolution at stride 1 with offsets ⌊κδ/s⌋. So col2im becomes, per
    phase, the stride-1 flat adds (``col2im_flat``) on a plane of ⌈padded/s⌉ per axis, and one
    strided copy of each phase into ∂J/∂z. ``groups``: per phase (in row-major order of the phase
    index), the (kernel offset's index, flat shift on the phase plane) of its taps, in the kernel
    offsets' order, so each position still receives its terms in that order."""

    stride: tuple[int, ...]
    plane: tuple[int, ...]
    groups: tuple[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], ...]


def phases(geom: Geometry, padded: tuple[int, ...]) -> Phases:
    """The phase planes and taps of ``geom`` on an input padded to ``padded``."""
    s = geom.stride
    plane = tuple(-(-p // si) for p, si in zip(padded, s))
    steps = [math.prod(plane[i + 1 :]) for i in range(len(plane))]
    taps: dict[tuple[int, ...], list[tuple[int, int]]] = {a: [] for a in product(*(range(si) for si in s))}
    for index, kappa in enumerate(product(*(range(k) for k in geom.kernel))):
        at = [k * d for k, d in zip(kappa, geom.dilation)]
        phase = tuple(a % si for a, si in zip(at, s))
        taps[phase].append((index, sum((a // si) * st for a, si, st in zip(at, s, steps))))
    return Phases(s, plane, tuple((a, tuple(t)) for a, t in taps.items()))


def col2im_phases(dcols: np.ndarray, ph: Phases, geom: Geometry, dz: np.ndarray, slot: int) -> np.ndarray:
    """∂J/∂z (n, C, *spatial), unpadded, written whole from dcols (n, K·C, Π plane) in the flat
    layout on the phase plane (zero past the product's columns): per phase, the flat adds of its
    taps into a scratch plane, then its positions copied into ∂J/∂z."""
    n, C = dz.shape[:2]
    size = C * math.prod(ph.plane)
    d = dcols.reshape(n, dcols.shape[1] // C, size)
    acc = SHARED.get("conv.phase", (n, size), dz.dtype, slot)
    planes = acc.reshape((n, C) + ph.plane)
    spatial = dz.shape[2:]
    for phase, taps in ph.groups:
        # this phase's positions inside the unpadded input, on the phase plane and in ∂J/∂z
        src, dst = [slice(None), slice(None)], [slice(None), slice(None)]
        for a, s, lo, L in zip(phase, ph.stride, geom.pad_lo, spatial):
            first = lo + (a - lo) % s  # the first padded position ≥ lo that is ≡ a (mod s)
            count = len(range(first, lo + L, s))
            src.append(slice((first - a) // s, (first - a) // s + count))
            dst.append(slice(first - lo, first - lo + s * (count - 1) + 1 if count else 0, s))
        if not taps:  # no kernel offset reaches these positions
            dz[tuple(dst)] = 0
            continue
        span = size - max(shift for _, shift in taps)
        k0, s0 = taps[0]
        acc[:, :s0] = 0
        np.copyto(acc[:, s0 : s0 + span], d[:, k0, :span])
        acc[:, s0 + span :] = 0
        for k, shift in taps[1:]:
            acc[:, shift : shift + span] += d[:, k, :span]
        np.copyto(dz[tuple(dst)], planes[tuple(src)])
    return dz


class FlatInputGrad:
    """∂J/∂z of one backward call by the flat col2im (stride 1) or per phase (larger strides), block by
    block: ``array`` is what the blocks write ((N, C, *padded) at stride 1, (N, C, *spatial) else),
    ``result`` the ∂J/∂z it holds, and ``block`` does one block of examples."""

    def __init__(self, W: np.ndarray, geom: Geometry, spatial: tuple, out: tuple, N: int, n_max: int, dtype):
        self.geom, self.out, self.n_max, self.dtype = geom, out, n_max, np.dtype(dtype)
        self.C = W.shape[1]
        self.Wt = kernel_major(W)  # (K·C, C'), rows (κ, c)
        self.padded = geom.padded(spatial)
        self.strided = any(s != 1 for s in geom.stride)
        if self.strided:
            self.plan: Phases | None = phases(geom, self.padded)
            self.offsets: list[int] = []
            self.array = np.empty((N, self.C) + tuple(spatial), dtype=dtype)
            self.result = self.array
        else:
            self.plan = None
            self.offsets = shifts(geom, self.padded)
            self.array = np.empty((N, self.C) + self.padded, dtype=dtype)
            self.result = self.array[(slice(None), slice(None)) + geom.interior(spatial)]

    def block(self, n0: int, n1: int, v: np.ndarray, on_grid: np.ndarray | None, slot: int) -> None:
        """Examples n0..n1 of ∂J/∂z from v (N, C', *out); ``on_grid``: their v already on the padded
        width's grid (stride 1, as ∂J/∂W put it there), or None to put it there here."""
        geom, out = self.geom, self.out
        plane = self.plan.plane if self.plan is not None else self.padded
        if on_grid is not None:
            vb = on_grid
        elif geom.nd == 2:  # rows W' apart onto rows as wide as the (phase) plane, zeros between
            width = plane[1]
            grid = SHARED.get(
                "conv.vgrid", (n1 - n0, v.shape[1], (out[0] - 1) * width + out[1]), v.dtype, slot
            )
            vb = onto_grid(v[n0:n1], width, grid)
        else:  # 1-d: the rows as they are
            vb = v[n0:n1]
        used = vb.shape[2]
        dcols = flat_dcols(geom.K, self.C, math.prod(plane), used, n1 - n0, self.n_max, self.dtype, slot)
        matmul_columns(self.Wt, vb, out=dcols[:, :, :used])
        if self.plan is not None:
            col2im_phases(dcols, self.plan, geom, self.array[n0:n1], slot)
        else:
            col2im_flat(dcols, self.offsets, self.array[n0:n1])
