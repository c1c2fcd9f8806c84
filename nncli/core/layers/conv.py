"""Conv1D and Conv2D (notes §7.3, eqs. 7.48–7.51) on one shared N-d core (``conv_core``).

Conv1D-S(z)_i = Σ_{j=1}^{2ℓ+1} w_j z_{i−ℓ+j−1}  (7.48) is a cross-correlation with ℓ zeros padded on each
side, i.e. the banded product Qz of eq. 7.49; Conv1D sums C of them per output channel (7.50) and
Conv2D does the same with k×k filters (7.51). Stride, other paddings and dilation are options, with
PyTorch's meaning, so a layer and its ``to_torch()`` twin compute the same function.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import AliasChoices, Field, model_validator

from nncli.core.errors import ConfigError
from nncli.core.kernels.im2col import SCRATCH, Geometry, PadBuffer, as_tuple, col2im, im2col
from nncli.core.kernels.threads import MIN_PARALLEL_ELEMENTS, run_blocks, workers
from nncli.core.module import HParams, Module, require_rank
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec

IntOrList = int | list[int]
PaddingMode = Literal["notes", "same", "valid"]


class ConvConfig(HParams):
    nd: ClassVar[int] = 1

    out: int = Field(
        gt=0,
        validation_alias=AliasChoices("out", "out_channels", "channels"),
        description="C', the number of output channels",
    )
    kernel: IntOrList = Field(
        validation_alias=AliasChoices("kernel", "kernel_size"),
        description="filter size k (Conv2D: k or [kh, kw])",
    )
    stride: IntOrList = 1
    padding: int | list[int] | PaddingMode = Field(
        "notes", description="'notes' (ℓ zeros each side, k = 2ℓ+1), 'same', 'valid' or zeros per side"
    )
    dilation: IntOrList = 1
    bias: bool = True

    @model_validator(mode="after")
    def _check(self):
        nd = type(self).nd
        for name, low in (("kernel", 1), ("stride", 1), ("dilation", 1)):
            vals = as_tuple(getattr(self, name), nd, name)
            if min(vals) < low:
                raise ValueError(f"{name} must be ≥ {low}, got {getattr(self, name)}")
        if not isinstance(self.padding, str) and min(as_tuple(self.padding, nd, "padding")) < 0:
            raise ValueError(f"padding must be ≥ 0, got {self.padding}")
        k = as_tuple(self.kernel, nd, "kernel")
        if self.padding == "notes" and any(x % 2 == 0 for x in k):
            # ConfigError (not ValueError) so it reaches the user unwrapped, with its advice
            raise ConfigError(
                f"the kernel must be odd for the notes' padding (k = 2ℓ+1 with ℓ zeros each side), got "
                f"{self.kernel}; use an odd kernel, or set `padding: same` or an int padding",
                field="kernel",
            )
        if self.padding == "same" and max(as_tuple(self.stride, nd, "stride")) != 1:
            raise ConfigError(
                f"padding 'same' needs stride 1, got stride {self.stride}; "
                f"use `padding: notes` or an int padding",
                field="padding",
            )
        return self


class Conv2DConfig(ConvConfig):
    nd: ClassVar[int] = 2


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


class ConvND(Module):
    """Shared N-d convolution: z (N, C, *S) → u (N, C', *S'), weight (C', C, *k), bias (C',).

    Output size per axis: S' = ⌊(S + p_lo + p_hi − δ(k−1) − 1)/s⌋ + 1. Backward with v = ∂J/∂u:
    ∂J/∂W = v colsᵀ, ∂J/∂b = Σ_{n,p} v, ∂J/∂z = col2im(Wᵀ v) (the transpose of the banded Q of 7.49).
    Saved for backward: the padded input (C·Π(S + p_lo + p_hi) floats per example); the columns are
    rebuilt block by block in backward, in cache, rather than kept (K times the memory).
    """

    nd: ClassVar[int] = 1
    layout: ClassVar[str] = "(C, L)"
    #: the trace's forward equation (the notes' numbers)
    forward_equation: ClassVar[str] = "u_i = Σ_j Conv-S_ij(z_j) + b_i"

    def __init__(self, **hparams):
        super().__init__(**hparams)
        c, nd = self.cfg, self.nd
        k, d = as_tuple(c.kernel, nd, "kernel"), as_tuple(c.dilation, nd, "dilation")
        if c.padding == "notes":
            lo = hi = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))  # δ·ℓ keeps L' = L at stride 1
        elif c.padding == "same":
            total = tuple(di * (ki - 1) for ki, di in zip(k, d))
            lo = tuple(t // 2 for t in total)  # odd totals: extra zero on
            hi = tuple(t - t // 2 for t in total)  # the right, as PyTorch
        elif c.padding == "valid":
            lo = hi = (0,) * nd
        else:
            lo = hi = as_tuple(c.padding, nd, "padding")
        self.geom = Geometry(k, as_tuple(c.stride, nd, "stride"), d, lo, hi)
        self._pad = PadBuffer(0.0)
        self._zp: np.ndarray | None = None

    def output_shape(self, input_shape):
        require_rank(self, input_shape, self.nd + 1, self.layout)
        return (self.cfg.out,) + self.geom.out_size(tuple(input_shape[1:]), type(self).__name__)

    def init_params(self, rng):
        # PyTorch's default: U(±1/√fan_in) for weight and bias, fan_in = C·Πk
        C = self.input_shape[0]
        bound = 1.0 / np.sqrt(C * self.geom.K)
        p = {"weight": rng.uniform(-bound, bound, size=(self.cfg.out, C) + self.geom.kernel)}
        if self.cfg.bias:
            p["bias"] = rng.uniform(-bound, bound, size=(self.cfg.out,))
        return p

    def forward(self, z):
        geom, Co = self.geom, self.cfg.out
        N, C = z.shape[:2]
        out = geom.out_size(z.shape[2:], type(self).__name__)
        P, CK = int(np.prod(out)), C * geom.K
        zp, W = self._pad.buffer(z, geom), self.params["weight"]
        W2 = W.reshape(Co, CK)
        u = np.empty((N, Co) + out, dtype=r_dtype(W, z))
        bias = self.params["bias"].reshape((Co,) + (1,) * self.nd) if self.cfg.bias else None
        blocks = _blocks(N, CK * P)

        def block(k: int, slot: int) -> None:
            # the padding copy, im2col, the product and the copy back to batch-first (with the bias
            # add), one block of examples at a time so its columns are multiplied while in cache
            n0, n1 = blocks[k]
            self._pad.fill_rows(zp, z, geom, n0, n1)
            cols = im2col(
                zp[n0:n1], geom, out, into=SCRATCH.get(f"conv.cols.{slot}", (CK, (n1 - n0) * P), z.dtype)
            )
            r = np.matmul(W2, cols, out=SCRATCH.get(f"conv.u.{slot}", (Co, (n1 - n0) * P), u.dtype))
            r = r.reshape((Co, n1 - n0) + out).swapaxes(0, 1)
            if bias is None:
                np.copyto(u[n0:n1], r)
            else:
                np.add(r, bias, out=u[n0:n1])

        run_blocks(block, len(blocks), _threads(N * CK * P))
        # backward rebuilds the columns from the padded input (C·Π(S+2p) floats per example), as
        # PyTorch keeps the input: K times less memory than keeping the columns, for one more gather
        self._zp, self._zshape, self._out = zp, z.shape, out
        return u

    def backward(self, v):
        return self._backward(v, input_grad=True)

    def backward_params(self, v):
        """∂J/∂W and ∂J/∂b only: no Wᵀv product and no col2im (a chain's first layer)."""
        self._backward(v, input_grad=False)

    def _backward(self, v, input_grad):
        geom, Co = self.geom, self.cfg.out
        N, C = self._zshape[:2]
        spatial, out = self._zshape[2:], self._out
        P, CK = int(np.prod(out)), C * geom.K
        W, zp = self.params["weight"], self._zp
        dt = r_dtype(W, v)
        dzp = np.empty((N, C) + geom.padded(spatial), dtype=dt) if input_grad else None
        Wt = W.reshape(Co, CK).T
        blocks = _blocks(N, CK * P)
        # per-block partials of ∂J/∂W (as (C·K, C')) and ∂J/∂b, summed below in block order: the
        # sum does not depend on which thread ran which block
        dW_parts = np.empty((len(blocks), CK, Co), dtype=dt)
        db_parts = np.empty((len(blocks), Co), dtype=v.dtype) if self.cfg.bias else None

        def block(k: int, slot: int) -> None:
            # per block of examples, all in cache: the columns again, v in (C', nb·P) layout,
            # cols vᵀ, ∂J/∂cols = Wᵀ v and col2im into the block's (zeroed) rows of ∂J/∂z
            n0, n1 = blocks[k]
            m = (n1 - n0) * P
            cols = im2col(zp[n0:n1], geom, out, into=SCRATCH.get(f"conv.cols.{slot}", (CK, m), zp.dtype))
            vt = SCRATCH.get(f"conv.v.{slot}", (Co, n1 - n0) + out, v.dtype)
            np.copyto(vt, v[n0:n1].swapaxes(0, 1))
            vt = vt.reshape(Co, m)  # (C', nb·P)
            np.matmul(cols, vt.T, out=dW_parts[k])
            if db_parts is not None:
                vt.sum(axis=1, out=db_parts[k])
            if input_grad:
                dcols = np.matmul(Wt, vt, out=SCRATCH.get(f"conv.dcols.{slot}", (CK, m), dt))
                dzp[n0:n1] = 0
                col2im(dcols, geom, dzp[n0:n1], out)

        run_blocks(block, len(blocks), _threads(N * CK * P))
        dW = np.zeros((CK, Co), dtype=dt)
        for k in range(len(blocks)):
            dW += dW_parts[k]
            if db_parts is not None:
                self.grads["bias"] += db_parts[k]
        self.grads["weight"] += dW.T.reshape(W.shape)
        if not input_grad:
            return None
        return dzp[(slice(None), slice(None)) + geom.interior(spatial)]

    # -- description ------------------------------------------------------------------------
    def describe(self):
        C, Co, K = self.input_shape[0], self.cfg.out, self.geom.K
        P = int(np.prod(self.output_shape(self.input_shape)[1:]))
        k = self.geom.kernel
        if self.nd == 1:
            head, nums = "k·C·C'", f"{k[0]}·{C}·{Co}"
        elif len(set(k)) == 1:
            head, nums = "C·C'·k²", f"{C}·{Co}·{k[0]}²"
        else:
            head, nums = "C·C'·kh·kw", f"{C}·{Co}·{k[0]}·{k[1]}"
        n = K * C * Co
        formula = f"{head} + C' = {nums} + {Co} = {n + Co}" if self.cfg.bias else f"{head} = {nums} = {n}"
        macs = Co * C * K * P
        saved = C * int(np.prod(self.geom.padded(self.input_shape[1:])))
        return {"formula": formula, "macs_forward": macs, "macs_backward": 2 * macs, "saved": saved}

    # -- what trace and export ask -------------------------------------------------------------
    def trace_equations(self):
        return (self.forward_equation, "∂J/∂w_ij = Σₙ v_i ⋆ z_j, ∂J/∂b_i = Σ v_i, ∂J/∂z_j = Σ_i Q_ijᵀ v_i")

    def torch_spec(self):
        c, g = self.cfg, self.geom
        # nncli pads asymmetrically only for padding "same" at stride 1, which torch spells the same way
        padding = "same" if g.pad_lo != g.pad_hi else _ints(g.pad_lo)
        args = {"kernel_size": _ints(g.kernel), "stride": _ints(g.stride), "padding": padding}
        args.update(dilation=_ints(g.dilation), bias=c.bias)
        return TorchSpec(f"Conv{self.nd}d", (self.input_shape[0], c.out), args)

    def to_onnx(self, graph, x, name):
        """Conv with kernel_shape, strides, pads (begin…, end…) and dilations."""
        g = self.geom
        ins = [x, graph.const(f"{name}.weight", self.params["weight"])]
        if self.cfg.bias:
            ins.append(graph.const(f"{name}.bias", self.params["bias"]))
        return graph.node(
            "Conv",
            ins,
            name,
            kernel_shape=list(g.kernel),
            strides=list(g.stride),
            pads=list(g.pad_lo) + list(g.pad_hi),
            dilations=list(g.dilation),
        )


def _ints(t) -> tuple[int, ...]:
    return tuple(int(x) for x in t)


@modules.register("Conv1D")  # names are case-insensitive: Conv1d, conv1d too
class Conv1D(ConvND):
    """Conv1D (eqs. 7.48–7.50): z (N, C, L) → u (N, C', L'), weight (C', C, k), bias (C',).

    Default padding 'notes': odd k = 2ℓ+1, δ·ℓ zeros each side, so with stride 1 L' = L and, for
    C = C' = 1, u = Qz with Q the banded matrix of eq. 7.49. Parameters: k·C·C' + C'.
    """

    notes_name = "Conv1D"
    forward_equation = "u_i = Σ_j Conv1D-S_ij(z_j) + b_i = Σ_j Q_ij z_j + b_i  (7.48–7.50)"
    Config = ConvConfig
    nd = 1
    layout = "(C, L)"

    @classmethod
    def examples(cls):
        return [
            ({"out": 2, "kernel": 3}, (2, 7)),
            ({"out": 3, "kernel": 3, "stride": 2, "padding": 1}, (2, 8)),
            ({"out": 2, "kernel": 4, "padding": "same", "dilation": 2}, (1, 9)),
            ({"out": 2, "kernel": 2, "padding": "valid", "bias": False}, (3, 5)),
            ({"out": 1, "kernel": 5, "dilation": 2, "stride": 3}, (2, 11)),
        ]


@modules.register("Conv2D")  # also Conv2d, conv2d
class Conv2D(ConvND):
    """Conv2D (eq. 7.51): z (N, C, H, W) → u (N, C', H', W'), weight (C', C, kh, kw), bias (C',).

    ``kernel``, ``stride``, ``padding``, ``dilation``: an int or [h, w]. Parameters: C·C'·kh·kw + C'.
    """

    notes_name = "Conv2D"
    forward_equation = "u_i = Σ_j Conv2D-S_ij(z_j) + b_i  (7.51)"
    Config = Conv2DConfig
    nd = 2
    layout = "(C, H, W)"

    @classmethod
    def examples(cls):
        return [
            ({"out": 2, "kernel": 3}, (2, 5, 4)),
            ({"out": 2, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0]}, (1, 6, 5)),
            ({"out": 1, "kernel": 2, "padding": "same", "dilation": [1, 2]}, (2, 4, 5)),
            ({"out": 3, "kernel": 3, "stride": 2, "padding": "valid", "bias": False}, (1, 7, 6)),
        ]
