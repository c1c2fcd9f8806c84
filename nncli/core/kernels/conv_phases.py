"""∂J/∂z of a strided convolution as one GEMM per phase of the input positions modulo the stride.

``conv_small``'s backward (notes eq. 7.49, ∂J/∂z = Qᵀv) splits the input positions along each axis
into the s phases x = q·s + r; each phase is read by an arithmetic progression of taps, so its
gradient is one product of the taps' weights by shifted rows of v. This module holds that index
algebra (``AxisPhase`` per axis, ``InputGrad`` for the layer), made once per input shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from nncli.core.kernels.im2col import Geometry


@dataclass(frozen=True)
class AxisPhase:
    """Along one spatial axis, the input positions x = q·s + r (q < Q) and the taps that read them.

    Forward reads x + p_lo = p·s + κ·δ, so x ≡ r (mod s) is read only by the taps κ with
    κ·δ ≡ r + p_lo (mod s), an arithmetic progression; for each, p = q − j with
    j = (κ·δ − r − p_lo)/s. ``taps`` lists them highest first, so j falls by ``j_step`` a tap.
    """

    where: slice  # the positions x ≡ r in ∂J/∂z
    Q: int
    taps: slice  # the kernel offsets along this axis, highest first
    T: int
    j_first: int
    j_step: int

    @classmethod
    def all(cls, L: int, k: int, s: int, d: int, lo: int) -> list[AxisPhase]:
        out = []
        for r in range(min(s, L)):
            kappas = [kk for kk in range(k - 1, -1, -1) if (kk * d - r - lo) % s == 0]
            js = [(kk * d - r - lo) // s for kk in kappas]
            step = kappas[0] - kappas[1] if len(kappas) > 1 else 1
            stop = kappas[-1] - step if kappas and kappas[-1] - step >= 0 else None
            out.append(
                cls(
                    where=slice(r, L, s),
                    Q=len(range(r, L, s)),
                    taps=slice(kappas[0], stop, -step) if kappas else slice(0, 0),
                    T=len(kappas),
                    j_first=js[0] if js else 0,
                    j_step=js[0] - js[1] if len(js) > 1 else 0,
                )
            )
        return out


@dataclass
class InputGrad:
    """∂J/∂z (Qᵀv, eq. 7.49) as one GEMM per phase of the input positions modulo the stride.

    For the positions x = q·s + r of each phase (per axis, ``AxisPhase``), with T taps:

        ∂J/∂z[n, c, q·s + r] = Σ_t Σ_o W[o, c, κ_t] v[n, o, q − j_t]       (v = 0 outside 0 ≤ p < P)
        (C, Q·N)             = A (C, T·C')  B (T·C', Q·N)                  (batch last; transposed
                                                                             with channels last)

    A the taps' weights, B the rows of v shifted by each tap's j: ONE strided copy of v_pad (v with
    zero margins so that every shift reads inside it). Each phase's product is then copied,
    transposed, into its positions of ∂J/∂z. Against ∂J/∂cols = W₂ᵀ v and col2im, this is the same
    multiply-adds without the K read-modify-write passes over ∂J/∂z (each a numpy ufunc call over
    3-d strided views: 7–9 µs each for the MNIST-1D CNN's second layer, whose backward went from
    134 to 120 µs).
    """

    margins: tuple  # zeros of v_pad before and after the P positions, per axis
    phases: list  # per phase: one AxisPhase per axis

    @property
    def padded(self) -> bool:
        """Whether some shift reads outside v's P positions (then v_pad is v with zero margins)."""
        return any(lo or hi for lo, hi in self.margins)

    @classmethod
    def make(cls, geom: Geometry, spatial: tuple, out: tuple) -> InputGrad:
        per_axis = [
            AxisPhase.all(L, k, s, d, lo)
            for L, k, s, d, lo in zip(spatial, geom.kernel, geom.stride, geom.dilation, geom.pad_lo)
        ]
        margins = []
        for ax, P in zip(per_axis, out):
            with_taps = [a for a in ax if a.T]
            lo = max([0] + [a.j_first for a in with_taps])
            hi = max([0] + [a.Q - (a.j_first - (a.T - 1) * a.j_step) - P for a in with_taps])
            margins.append((lo, hi))
        return cls(tuple(margins), list(product(*per_axis)))
