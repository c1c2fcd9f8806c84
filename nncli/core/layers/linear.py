"""MM: the matrix-multiplication (fully connected) module, u = W z + b."""

from __future__ import annotations

import numpy as np
from pydantic import AliasChoices, Field

from nncli.core.kernels.threads import matmul_one_thread, small_for_threads
from nncli.core.module import HParams, Module, require_rank
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec


class MMConfig(HParams):
    out: int = Field(
        gt=0,
        validation_alias=AliasChoices("out", "out_features", "units"),
        description="output size (number of rows of W)",
    )
    bias: bool = True


@modules.register("MM", "Linear", "Dense", "FC", "FullyConnected")
class MM(Module):
    """MM_{W,b}(z) = W z + b, applied to each example (notes §7.3, eq. 7.36).

    Shape: z (N, d) → u (N, out); W (out, d), b (out,), as PyTorch's ``nn.Linear``.
    Backward (B[MM, z], §7.4.3): with v = ∂J/∂u,  ∂J/∂W = vᵀ z,  ∂J/∂b = Σ_n v_n,  ∂J/∂z = v W.
    """

    notes_name = "MM"
    batch_split = "yes"
    Config = MMConfig

    def output_shape(self, input_shape):
        require_rank(self, input_shape, 1, "(d,)")
        return (self.cfg.out,)

    def init_params(self, rng):
        # PyTorch's default: kaiming_uniform(a=√5) on W and U(±1/√fan_in) on b, both U(±1/√d).
        d = self.input_shape[0]
        bound = 1.0 / np.sqrt(d)
        p = {"weight": rng.uniform(-bound, bound, size=(self.cfg.out, d))}
        if self.cfg.bias:
            p["bias"] = rng.uniform(-bound, bound, size=(self.cfg.out,))
        return p

    # Products OpenBLAS would thread but that are too small to pay for waking its threads run on
    # one BLAS thread (``kernels.threads.small_for_threads``); decided once per batch size, as the
    # three products of a step (u, ∂J/∂W, ∂J/∂z) all have N·d·m multiply-adds.
    _batch = -1
    _one_thread = False

    def forward(self, z):
        self._z = z
        if z.shape[0] != self._batch:
            self._batch = z.shape[0]
            self._one_thread = small_for_threads(z.shape[0], z.shape[1], self.cfg.out)
        W = self.params["weight"]
        # written out, not through a helper: the products of small models cost a few µs each
        u = matmul_one_thread(z, W.T) if self._one_thread else z @ W.T
        if self.cfg.bias:
            u += self.params["bias"]
        return u

    def backward(self, v):
        self.backward_params(v)
        W = self.params["weight"]
        return matmul_one_thread(v, W) if self._one_thread else v @ W

    def backward_params(self, v):
        """Only add ∂J/∂θ, as ``backward`` does: a chain's first layer, whose ∂J/∂z nobody reads.
        Just after ``zero_grads`` the products are written into the gradients, not added."""
        gW, fresh = self.grads["weight"], self.grads_zeroed
        self.grads_zeroed = False
        if fresh:
            matmul_one_thread(v.T, self._z, out=gW) if self._one_thread else np.matmul(v.T, self._z, out=gW)
        else:
            gW += matmul_one_thread(v.T, self._z) if self._one_thread else v.T @ self._z
        if self.cfg.bias:
            if fresh:
                v.sum(axis=0, out=self.grads["bias"])
            else:
                self.grads["bias"] += v.sum(axis=0)

    def describe(self):
        d, m = self.input_shape[0], self.cfg.out
        if self.cfg.bias:
            formula = f"m·d + m = {m}·{d} + {m} = {m * d + m}"
        else:
            formula = f"m·d = {m}·{d} = {m * d}"
        return {"formula": formula, "macs_forward": m * d, "macs_backward": 2 * m * d, "saved": d}

    @classmethod
    def examples(cls):
        return [({"out": 3}, (4,)), ({"out": 2, "bias": False}, (3,))]

    def trace_equations(self):
        return ("u = W z + b  (7.36)", "∂J/∂W = vᵀz, ∂J/∂b = Σₙ vₙ, ∂J/∂z = v W  (§7.4.3)")

    def torch_spec(self):
        return TorchSpec("Linear", (self.input_shape[0], self.cfg.out), {"bias": self.cfg.bias})

    def to_onnx(self, graph, x, name):
        """Gemm(z, W, b, transB=1): u = z Wᵀ + b, batch-first (eq. 7.36)."""
        ins = [x, graph.const(f"{name}.weight", self.params["weight"])]
        if self.cfg.bias:
            ins.append(graph.const(f"{name}.bias", self.params["bias"]))
        return graph.node("Gemm", ins, name, transB=1)
