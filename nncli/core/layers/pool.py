"""Max and average pooling over 1 or 2 spatial axes, on the convolution core's geometry.

Windows are the convolution's (``conv_core.Geometry``, dilation 1): output size per axis
S' = ⌊(S + 2p − k)/s⌋ + 1, stride defaulting to the kernel. Both are computed as a loop over the K
kernel offsets of strided slices — never over examples or output positions, and without copying
the K-times larger window tensor: each offset is one whole-array ``np.maximum`` / ``np.add`` into
the output (``out=``), and the backward adds (or, when the windows tile the input, writes) each
offset's share into that offset's view of ∂J/∂z, so no pass gathers or scatters by index.

- Max pooling pads with −inf (padding never wins) and sends each output's gradient to its argmax,
  the first maximum in row-major window order on ties, as PyTorch does (a window holding NaN has
  the value NaN and routes to its last NaN, as PyTorch's kernel). The argmax is found once in
  forward, as a small integer map (offset index per output) that backward reads.
- Average pooling pads with zeros and divides by K including the padding (PyTorch's default
  ``count_include_pad=True``).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import AliasChoices, Field, model_validator

from nncli.core.kernels.im2col import Geometry, as_tuple, fill_rows, pad_buffer
from nncli.core.kernels.threads import over_examples
from nncli.core.kernels.workspace import SHARED, Workspace
from nncli.core.layers.activations import constant_row
from nncli.core.layers.relu_pool import ReluPool, is_relu
from nncli.core.module import GENERIC_EQUATIONS, HParams, Module, require_rank
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec

IntOrList = int | list[int]


class PoolConfig(HParams):
    nd: ClassVar[int] = 1

    kernel: IntOrList = Field(
        validation_alias=AliasChoices("kernel", "kernel_size", "pool_size"),
        description="window size k (2-D: k or [kh, kw])",
    )
    stride: IntOrList | None = Field(None, description="default: the kernel (windows do not overlap)")
    padding: IntOrList = Field(0, description="per side; at most half the kernel, as in PyTorch")

    @model_validator(mode="after")
    def _check(self):
        nd = type(self).nd
        k = as_tuple(self.kernel, nd, "kernel")
        if min(k) < 1:
            raise ValueError(f"kernel must be ≥ 1, got {self.kernel}")
        if self.stride is not None and min(as_tuple(self.stride, nd, "stride")) < 1:
            raise ValueError(f"stride must be ≥ 1, got {self.stride}")
        p = as_tuple(self.padding, nd, "padding")
        if min(p) < 0 or any(pi > ki // 2 for pi, ki in zip(p, k)):
            # a wider pad would make windows of padding only (−inf for max pooling)
            raise ValueError(
                f"padding must lie in [0, kernel // 2], got padding {self.padding} with kernel {self.kernel}"
            )
        return self


class Pool2DConfig(PoolConfig):
    nd: ClassVar[int] = 2


class PoolND(Module):
    """Shared pooling: z (N, C, *S) → u (N, C, *S'); no parameters."""

    nd: ClassVar[int] = 1
    batch_split = "gains"
    layout: ClassVar[str] = "(C, L)"
    fill: ClassVar[float] = 0.0
    torch_name: ClassVar[str] = ""  # the torch.nn class, e.g. "MaxPool1d"
    onnx_op: ClassVar[str] = ""  # the ONNX operator, e.g. "MaxPool"
    onnx_attrs: ClassVar[dict] = {}  # its attributes besides the window's
    equations: ClassVar[tuple[str, str]] = GENERIC_EQUATIONS  # the trace's (forward, backward)

    @classmethod
    def examples(cls):
        return _examples(cls.nd)

    def __init__(self, **hparams):
        super().__init__(**hparams)
        c, nd = self.cfg, self.nd
        k = as_tuple(c.kernel, nd, "kernel")
        s = k if c.stride is None else as_tuple(c.stride, nd, "stride")
        p = as_tuple(c.padding, nd, "padding")
        self.geom = Geometry(k, s, (1,) * nd, p, p)
        # the padded input (its border written once per shape) and the argmax, kept from forward to
        # backward; the per-block temporaries come from the shared workspace (every layer's in one)
        self._ws = Workspace()

    def output_shape(self, input_shape):
        require_rank(self, input_shape, self.nd + 1, self.layout)
        return (input_shape[0],) + self.geom.out_size(tuple(input_shape[1:]), type(self).__name__)

    def _begin(self, z):
        """The padded buffer (border set, interior not yet written: ``_fold`` fills it per block)
        and the output size."""
        out = self.geom.out_size(z.shape[2:], type(self).__name__)
        self._zshape, self._out = z.shape, out
        return pad_buffer(self._ws, z, self.geom, self.fill), out

    def _view(self, a: np.ndarray, sl: tuple[slice, ...]) -> np.ndarray:
        return a[(slice(None), slice(None)) + sl]

    def _fold(self, z, ufunc, finish=None, relu_mask: np.ndarray | None = None) -> np.ndarray:
        """ufunc folded over the K offset views of the padded z in window order, ``ufunc(x_κ, acc)``
        (acc second: on ties np.maximum returns it, so the first maximum's bits are kept), one
        pass per offset; then ``finish(views, acc, n0, n1, slot)``. Per block of examples, in
        cache, large arrays on threads (``over_examples``).

        With ``relu_mask`` (a bool array shaped as z) the fold runs over ReLU(z) instead, computed
        per block as the ReLU module does (mask z > 0, max(z, 0)) into the padded buffer or, when
        unpadded, a block-sized scratch: the ReLU's output never makes a whole-array pass."""
        zp, out = self._begin(z)
        acc = np.empty(z.shape[:2] + out, dtype=z.dtype)
        offsets = [sl for _, sl in self.geom.offsets(out)]
        inside = (slice(None), slice(None)) + self.geom.interior(z.shape[2:])
        zeros = constant_row(z.shape[1:], z.dtype, 0.0) if relu_mask is not None else None

        def rectified(n0: int, n1: int, slot: int) -> np.ndarray:
            assert relu_mask is not None and zeros is not None
            zb = z[n0:n1]
            np.greater(zb, 0, out=relu_mask[n0:n1])
            block = zp[n0:n1] if zp is not z else SHARED.get("pool.relu", zb.shape, z.dtype, slot)
            np.maximum(zb, zeros, out=block if zp is z else block[inside])
            return block

        def block(n0: int, n1: int, slot: int) -> None:
            if relu_mask is None:
                fill_rows(zp, z, self.geom, n0, n1)
                src = zp[n0:n1]
            else:
                src = rectified(n0, n1, slot)
            views = [self._view(src, sl) for sl in offsets]
            a = acc[n0:n1]
            if len(views) == 1:
                np.copyto(a, views[0])
            else:
                ufunc(views[1], views[0], out=a)
                for x in views[2:]:
                    ufunc(x, a, out=a)
            if finish is not None:
                finish(views, a, n0, n1, slot)

        over_examples(block, z.shape[0], zp[:1].size)
        return acc

    def _scatter(self, v: np.ndarray, parts, relu_mask: np.ndarray | None = None) -> np.ndarray:
        """∂J/∂z from v = ∂J/∂u: the per-offset gradients ``parts(v_block, n0, n1, slot, into)`` (each
        shaped like the block of u, in window order) summed into ∂J/∂z, the adjoint of the slicing,
        per block of examples. Parts must hold no −0 (the sum over zeros would make it +0): when the
        windows tile the input exactly (stride = kernel, no padding, sizes divisible), each element
        has one tap and the parts are written, not added, into ∂J/∂z; ``into`` is then the list of
        each offset's view of ∂J/∂z, which a part may write itself and return (else None). With
        ``relu_mask`` (from ``_fold``) each block is then multiplied by the mask as the ReLU's
        backward does (eq. 7.59)."""
        geom, spatial = self.geom, self._zshape[2:]
        tiled = geom.stride == geom.kernel and not any(geom.pad_lo) and not any(geom.pad_hi)
        tiled = tiled and all(o * k == n for o, k, n in zip(self._out, geom.kernel, spatial))
        make = np.empty if tiled else np.zeros
        dzp = make(self._zshape[:2] + geom.padded(spatial), dtype=v.dtype)
        offsets = [sl for _, sl in geom.offsets(self._out)]
        inside = geom.interior(spatial)

        def block(n0: int, n1: int, slot: int) -> None:
            d = dzp[n0:n1]
            views = [self._view(d, sl) for sl in offsets]
            for view, g in zip(views, parts(v[n0:n1], n0, n1, slot, views if tiled else None)):
                if g is view:  # the part wrote itself there
                    continue
                if tiled:
                    np.copyto(view, g)
                else:
                    np.add(view, g, out=view)
            if relu_mask is not None:
                inner = self._view(d, inside)
                mask = SHARED.get("pool.relu_mask", inner.shape, v.dtype, slot)
                np.copyto(mask, relu_mask[n0:n1])  # as floats: a product with booleans casts slowly
                np.multiply(inner, mask, out=inner)

        over_examples(block, v.shape[0], dzp[:1].size)
        return self._view(dzp, geom.interior(spatial))

    @abstractmethod
    def backward(self, v, relu_mask: np.ndarray | None = None):
        """∂J/∂z for v = ∂J/∂u; with ``relu_mask`` (from ``relu_forward``) that of ReLU then this pooling."""

    @abstractmethod
    def relu_forward(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(this pooling of ReLU(z), the ReLU's mask), block by block (``cheaper_pair``)."""

    def relu_backward(self, v: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """∂J/∂z of ReLU then this pooling, from ``relu_forward``'s mask."""
        return self.backward(v, relu_mask=mask)

    def cheaper_pair(self, previous: Module) -> list[Module] | None:
        """After a ReLU, one module doing both block by block in cache (``ReluPool``). Average
        pooling applies the ReLU to each block first. Max pooling takes the maximum first and the
        ReLU after it, on 1/K of the elements: max_κ max(z_κ, 0) = max(max_κ z_κ, 0), and the
        gradients agree too. Where a window's maximum is positive it is the same element in z and
        in ReLU(z) (the first of equal values in both); where it is not, the ReLU's mask sends
        zero to the whole window either way."""
        return [ReluPool(self)] if is_relu(previous) else None

    def describe(self):
        C = self.input_shape[0]
        P = int(np.prod(self.output_shape(self.input_shape)[1:]))
        K = self.geom.K
        return {
            "formula": "",
            "macs_forward": C * P * K,
            "macs_backward": self._backward_ops(C * P),
            "saved": self._saved(C * P),
        }

    def _saved(self, outputs: int) -> int:
        return 0

    def _backward_ops(self, outputs: int) -> int:
        return outputs * self.geom.K  # each output's gradient spread over its K taps

    # -- what trace and export ask --------------------------------------------------------------
    def trace_equations(self):
        return self.equations

    def torch_spec(self):
        g = self.geom
        one = self.nd == 1
        args = dict(
            kernel_size=g.kernel[0] if one else g.kernel,
            stride=g.stride[0] if one else g.stride,
            padding=g.pad_lo[0] if one else g.pad_lo,
        )
        return TorchSpec(self.torch_name, kwargs=args)

    def to_onnx(self, graph, x, name):
        """MaxPool / AveragePool with kernel_shape, strides and pads (begin…, end…)."""
        g = self.geom
        attrs = dict(
            kernel_shape=list(g.kernel), strides=list(g.stride), pads=list(g.pad_lo) + list(g.pad_hi)
        )
        return graph.node(self.onnx_op, [x], name, **attrs, **self.onnx_attrs)


class MaxPoolND(PoolND):
    """u[n, c, p] = max_κ z_pad[n, c, p·s + κ]; ∂J/∂z routes v[n, c, p] to the argmax κ*.

    Saved for backward: the argmax index per output (an int8/int16, P per channel per example).
    """

    fill = float("-inf")
    onnx_op = "MaxPool"  # padding never wins, as nncli's −inf
    equations = ("u = max of each window of z", "∂J/∂z = v routed to each window's argmax")

    def forward(self, z, relu_mask: np.ndarray | None = None):
        """u = max over each window; with ``relu_mask`` (bool, shaped as u) then ReLU(u), block by
        block while the block is in cache, the mask u > 0 kept as the ReLU module keeps it."""
        out = self.geom.out_size(z.shape[2:], type(self).__name__)
        # the argmax of each window, a small integer per output (kept for backward)
        self._arg = arg = self._ws.get("argmax", z.shape[:2] + out, np.min_scalar_type(self.geom.K))
        zeros = constant_row(z.shape[1:2] + out, z.dtype, 0.0)

        def argmax(views, best, n0, n1, slot):
            self._argmax(views, best, arg[n0:n1], slot)
            if relu_mask is not None:
                np.greater(best, 0, out=relu_mask[n0:n1])
                np.maximum(best, zeros, out=best)

        return self._fold(z, np.maximum, argmax)

    def relu_forward(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(MaxPool(ReLU(z)), the ReLU's mask), computed as ReLU(MaxPool(z)): see ``cheaper_pair``."""
        mask = np.empty(z.shape[:2] + self.geom.out_size(z.shape[2:], type(self).__name__), np.bool_)
        return self.forward(z, relu_mask=mask), mask

    def _argmax(self, views, best, arg, slot: int) -> None:
        """Into ``arg``, per output of a block, the index of its window's first offset equal to the
        maximum (the last NaN's where the window holds NaN, as PyTorch's ``val > max || isnan(val)``).

        Masks are applied arithmetically, never with ``where=``: on a random mask numpy's masked
        loops branch per element and run 10–50× slower than a plain pass."""
        K = len(views)
        hit = SHARED.get("pool.hit", best.shape, np.bool_, slot)
        step = SHARED.get("pool.step", best.shape, arg.dtype, slot)
        arg.fill(K - 1)
        for i in range(K - 2, -1, -1):  # backwards, so that the first equal offset writes last
            np.equal(views[i], best, out=hit)
            np.subtract(arg, i, out=step)  # ≥ 0: arg only ever decreases towards i
            np.multiply(step, hit, out=step)
            np.subtract(arg, step, out=arg)  # arg = i where hit
        if np.isnan(best).any():  # NaN equals nothing: route to the last NaN instead (rare)
            for i, x in enumerate(views):
                np.copyto(arg, i, where=np.isnan(x))

    def backward(self, v, relu_mask: np.ndarray | None = None):
        """∂J/∂z: v routed to each window's argmax; with ``relu_mask`` (from ``forward``) v is first
        multiplied by it, as the ReLU's backward does (eq. 7.59), block by block."""
        K = self.geom.K

        def routed(vb, n0, n1, slot, into):
            scratch = SHARED.get("pool.v", vb.shape, vb.dtype, slot)
            if relu_mask is not None:
                np.copyto(scratch, relu_mask[n0:n1])  # as floats: a product with booleans casts slowly
                vb = np.multiply(vb, scratch, out=scratch)
            vb = np.add(vb, vb.dtype.type(0), out=scratch)
            # −0 → +0 above, as a sum over zeros gives (see _scatter)
            arg = self._arg[n0:n1]
            return (self._routed(vb, arg, i, slot, into[i] if into else None) for i in range(K))

        return self._scatter(v, routed)

    def _routed(
        self, v: np.ndarray, arg: np.ndarray, i: int, slot: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """v where offset i holds the window's maximum, +0 elsewhere: ``np.where(arg == i, v, 0)``
        computed as a bitwise AND of v's bits with an all-ones/all-zeros mask (branch-free). Into
        ``out`` when given (a strided view of ∂J/∂z: one pass less than writing scratch and copying)."""
        bits = np.dtype(f"i{v.dtype.itemsize}")
        hit = SHARED.get("pool.hit", v.shape, np.bool_, slot)
        mask = SHARED.get("pool.mask", v.shape, bits, slot)
        if out is None:
            out = SHARED.get("pool.routed", v.shape, v.dtype, slot)
        np.equal(arg, i, out=hit)
        np.negative(hit.view(np.uint8), out=mask, dtype=bits, casting="unsafe")  # 1 → −1 = all ones
        np.bitwise_and(v.view(bits), mask, out=out.view(bits))
        return out

    def _saved(self, outputs):
        return outputs

    def _backward_ops(self, outputs):
        return outputs  # one add per output, at its argmax


class AvgPoolND(PoolND):
    """u[n, c, p] = (1/K) Σ_κ z_pad[n, c, p·s + κ] (zeros padded, counted in K); ∂J/∂z spreads v/K.

    Nothing is saved for backward but the shapes.
    """

    fill = 0.0
    onnx_op = "AveragePool"
    onnx_attrs = {"count_include_pad": 1}  # zeros counted in K, as here
    equations = ("u = mean of each window of z", "∂J/∂z = v spread evenly over each window")

    def forward(self, z, relu_mask: np.ndarray | None = None):
        K = self.geom.K

        def mean(views, acc, n0, n1, slot):
            acc /= K

        return self._fold(z, np.add, mean, relu_mask)

    def backward(self, v, relu_mask: np.ndarray | None = None):
        K = self.geom.K

        def spread(vb, n0, n1, slot, into):
            g = np.divide(vb, K, out=SHARED.get("pool.spread", vb.shape, vb.dtype, slot))
            g += g.dtype.type(0)  # −0 → +0, as a sum over zeros gives (see _scatter)
            return (g for _ in range(K))

        return self._scatter(v, spread, relu_mask)

    def relu_forward(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(AvgPool(ReLU(z)), the ReLU's mask z > 0): the ReLU per block, in cache (``_fold``)."""
        mask = np.empty(z.shape, np.bool_)
        return self.forward(z, relu_mask=mask), mask


def _examples(nd):
    if nd == 1:
        return [
            ({"kernel": 2}, (2, 6)),
            ({"kernel": 3, "stride": 2, "padding": 1}, (1, 7)),
            ({"kernel": 3, "stride": 1}, (2, 5)),
        ]
    return [
        ({"kernel": 2}, (2, 4, 4)),
        ({"kernel": [3, 2], "stride": [2, 1], "padding": [1, 0]}, (1, 5, 4)),
        ({"kernel": 3, "stride": 2, "padding": 1}, (1, 5, 5)),
    ]


@modules.register("MaxPool1D", "MaxPooling1D")  # names are case-insensitive: MaxPool1d too
class MaxPool1D(MaxPoolND):
    """Max pooling over L: z (N, C, L) → u (N, C, L'), L' = ⌊(L + 2p − k)/s⌋ + 1."""

    Config, nd, layout = PoolConfig, 1, "(C, L)"
    torch_name = "MaxPool1d"


@modules.register("MaxPool2D", "MaxPooling2D")
class MaxPool2D(MaxPoolND):
    """Max pooling over H, W: z (N, C, H, W) → u (N, C, H', W'); kernel/stride/padding int or [h, w]."""

    Config, nd, layout = Pool2DConfig, 2, "(C, H, W)"
    torch_name = "MaxPool2d"


@modules.register("AvgPool1D", "AveragePooling1D", "AvgPooling1D")
class AvgPool1D(AvgPoolND):
    """Average pooling over L: z (N, C, L) → u (N, C, L'), L' = ⌊(L + 2p − k)/s⌋ + 1."""

    Config, nd, layout = PoolConfig, 1, "(C, L)"
    torch_name = "AvgPool1d"


@modules.register("AvgPool2D", "AveragePooling2D", "AvgPooling2D")
class AvgPool2D(AvgPoolND):
    """Average pooling over H, W: z (N, C, H, W) → u (N, C, H', W'); kernel/stride/padding int or [h, w]."""

    Config, nd, layout = Pool2DConfig, 2, "(C, H, W)"
    torch_name = "AvgPool2d"
