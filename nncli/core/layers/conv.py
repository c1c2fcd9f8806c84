"""Conv1D and Conv2D (notes §7.3, eqs. 7.48–7.51) on one shared N-d core (``conv_core``).

Conv1D-S(z)_i = Σ_{j=1}^{2ℓ+1} w_j z_{i−ℓ+j−1}  (7.48) is a cross-correlation with ℓ zeros padded on each
side, i.e. the banded product Qz of eq. 7.49; Conv1D sums C of them per output channel (7.50) and
Conv2D does the same with k×k filters (7.51). Stride, other paddings and dilation are options, with
PyTorch's meaning, so a layer and its ``to_torch()`` twin compute the same function.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import AliasChoices, Field, model_validator

from nncli.core.errors import ConfigError
from nncli.core.kernels.conv import conv_backward, conv_forward
from nncli.core.kernels.conv_small import SmallPlan, small_path
from nncli.core.kernels.im2col import Geometry, as_tuple, pad_buffer
from nncli.core.kernels.workspace import Workspace
from nncli.core.module import HParams, Module, require_rank
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec

IntOrList = int | list[int]
_BOTH = (slice(None), slice(None))  # the batch and channel axes, whole
_PLANS_KEPT = 3  # input shapes whose small-shape plans a layer keeps


def _flat(a: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) → (N, C, Π spatial); N may be 0 (an empty batch), where -1 is ambiguous."""
    return a.reshape(*a.shape[:2], math.prod(a.shape[2:]))


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


class ConvND(Module):
    """Shared N-d convolution: z (N, C, *S) → u (N, C', *S'), weight (C', C, *k), bias (C',).

    Output size per axis: S' = ⌊(S + p_lo + p_hi − δ(k−1) − 1)/s⌋ + 1. Backward with v = ∂J/∂u:
    ∂J/∂W = v colsᵀ, ∂J/∂b = Σ_{n,p} v, ∂J/∂z = col2im(Wᵀ v) (the transpose of the banded Q of 7.49;
    at stride 1 the kernel computes it as the convolution of v with the flipped kernel).
    Saved for backward: the padded input (C·Π(S + p_lo + p_hi) floats per example); the columns are
    rebuilt block by block in backward, in cache, rather than kept (K times the memory).
    Small shapes (few output positions per example, ``kernels.conv_small.small_path``) take
    ``kernels/conv_small.py``: one GEMM per product over the whole batch, with a plan of buffers and
    views made once per input shape (the padded input kept in it, batch or channels last).
    """

    nd: ClassVar[int] = 1
    batch_split = "gains"
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
        self._ws = Workspace()  # the padded input, kept for backward
        self._zp: np.ndarray | None = None
        # the small-shape path's plans by (input shape, dtype), None where a shape takes conv.py's
        # path; a few kept (the training batch, the last short one, evaluation's), oldest dropped
        self._plans: dict[tuple, SmallPlan | None] = {}
        self._plan: SmallPlan | None = None  # the last forward's, for backward

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

    # -- computation: the notes' equations (reference) and the fast path (nncli.core.kernels.conv) --
    def reference_forward(self, z):
        """u[n, o, p] = b_o + Σ_c Σ_κ W[o, c, κ] z_pad[n, c, p·s + κ·δ]   (7.48, 7.50, 7.51)."""
        W, zp = self.params["weight"], self._zero_padded(z)
        taps = self.geom.offsets(self._out_of(z))  # (κ, the slices p·s + κ·δ of z_pad)
        u = sum(np.einsum("oc,nc...->no...", W[_BOTH + kappa], zp[_BOTH + sl]) for kappa, sl in taps)
        return u + self.params["bias"].reshape(-1, *[1] * self.nd) if self.cfg.bias else u

    def reference_backward(self, z, v):
        """(∂J/∂z, {"weight": ∂J/∂W, "bias": ∂J/∂b}) for v = ∂J/∂u, without touching ``grads``:
        ∂J/∂W[o, c, κ] = Σ_{n,p} v[n, o, p] z_pad[n, c, p·s + κ·δ],  ∂J/∂b_o = Σ_{n,p} v[n, o, p],
        ∂J/∂z = Qᵀv: each output's v[n, o, p] W[o, c, κ] added back to the input it read (7.49)."""
        W, zp = self.params["weight"], self._zero_padded(z)
        dzp, dW = np.zeros_like(zp), np.zeros_like(W)
        for kappa, sl in self.geom.offsets(self._out_of(z)):
            window = zp[_BOTH + sl]  # (N, C, *out): z_pad[n, c, p·s + κ·δ]
            dW[_BOTH + kappa] = np.einsum("nop,ncp->oc", _flat(v), _flat(window))
            dzp[_BOTH + sl] += np.einsum("oc,no...->nc...", W[_BOTH + kappa], v)
        grads = {"weight": dW}
        if self.cfg.bias:
            grads["bias"] = v.sum(axis=(0, *range(2, v.ndim)))
        return dzp[_BOTH + self.geom.interior(z.shape[2:])], grads

    def _zero_padded(self, z):  # the notes' zeros on each side
        return np.pad(z, [(0, 0), (0, 0), *zip(self.geom.pad_lo, self.geom.pad_hi)])

    def _out_of(self, z):
        return self.geom.out_size(z.shape[2:], type(self).__name__)

    def _small_plan(self, z: np.ndarray) -> SmallPlan | None:
        """The small-shape path's plan for ``z`` (``kernels.conv_small``), or None for conv.py's."""
        W = self.params["weight"]
        key = (z.shape, z.dtype, W.dtype)
        if key in self._plans:
            return self._plans[key]
        plan = None
        if z.dtype == W.dtype:
            out = self._out_of(z)
            N, C = z.shape[:2]
            if small_path(N, C, self.geom.K, math.prod(out), self.geom.nd):
                plan = SmallPlan(self.geom, z.shape, W.shape[0], "bias" in self.params, z.dtype)
        if len(self._plans) >= _PLANS_KEPT:
            del self._plans[next(iter(self._plans))]
        self._plans[key] = plan
        return plan

    def forward(self, z):
        plan = self._plan = self._small_plan(z)
        if plan is not None:
            return plan.forward(z, self.params["weight"], self.params.get("bias"))
        out = self._out_of(z)
        zp = pad_buffer(self._ws, z, self.geom)  # border set; conv_forward writes the interior
        u = conv_forward(z, zp, self.params["weight"], self.params.get("bias"), self.geom, out)
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
        if self._plan is not None:
            W = self.params["weight"]
            return self._plan.backward(v, W, self.grads["weight"], self.grads.get("bias"), input_grad)
        return conv_backward(
            self._zp,
            v,
            self.params["weight"],
            self.geom,
            self._zshape[2:],
            self._out,
            self.grads["weight"],
            self.grads.get("bias"),
            input_grad,
        )

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
