"""BatchNorm and GroupNorm: the notes' alternatives to LN (§7.3, "more often used in computer vision").

All three normalisations compute x̂ = (z − μ̂)/σ̂ and u = β + γ ⊙ x̂ and differ only in the set of
values μ̂ and σ̂² are taken over, for channels-first inputs z (N, C, *S):

    LN         all of one example:            (C, *S)   for each n
    GroupNorm  one group of C/G channels:     (C/G, *S) for each n and group
    BatchNorm  one channel across the batch:  (N, *S)   for each c

so the backward through the statistics is the same equation over a different set (``_normalize_backward``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from nncli.core.errors import ShapeError
from nncli.core.module import HParams, Module
from nncli.core.registry import modules
from nncli.core.torch_spec import TorchSpec


def _normalize_backward(g: np.ndarray, xhat: np.ndarray, rsigma: np.ndarray, axes: tuple[int, ...]):
    """∂J/∂z = (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) / σ̂ for g = ∂J/∂x̂, means over the statistics' set
    ``axes`` (``rsigma`` = 1/σ̂ broadcast against them)."""
    mean_g = g.mean(axis=axes, keepdims=True)
    mean_gx = (g * xhat).mean(axis=axes, keepdims=True)
    return (g - mean_g - xhat * mean_gx) * rsigma


def set_statistics(x: np.ndarray, axis: int | tuple[int, ...]) -> dict[str, float]:
    """``input_mean`` and ``input_std``: the means over the statistics' sets of μ̂ and of the biased
    σ̂ without ε, for values ``x`` whose ``axis`` holds one set (what ``train.watch`` records)."""
    x = np.asarray(x, dtype=np.float64)
    return {"input_mean": float(x.mean(axis=axis).mean()), "input_std": float(x.std(axis=axis).mean())}


def _onnx_normalize(graph, x: str, name: str, axes: list[int], eps: float) -> str:
    """(x − μ̂)/√(σ̂² + ε) in opset 17 ops, μ̂ and σ̂² (biased) over ``axes`` by ReduceMean."""
    mean = graph.node("ReduceMean", [x], name, axes=axes, keepdims=1)
    d = graph.node("Sub", [x, mean], name)
    var = graph.node("ReduceMean", [graph.node("Mul", [d, d], name)], name, axes=axes, keepdims=1)
    sigma = graph.node("Sqrt", [graph.node("Add", [var, graph.scalar(name, "eps", eps)], name)], name)
    return graph.node("Div", [d, sigma], name)


def _built_shape(module: Module) -> tuple[int, ...]:
    """The per-example input shape ``module`` was built for."""
    if module.input_shape is None:
        raise ValueError(f"{type(module).__name__} is not built yet")
    return module.input_shape


def _onnx_affine(module: _BatchNorm | GroupNorm, graph, y: str, name: str) -> str:
    """y ⊙ γ + β with per-channel γ, β shaped (C, 1, …) against (N, C, *S); y itself without affine."""
    if not module.cfg.affine:
        return y
    shape = (-1,) + (1,) * (len(_built_shape(module)) - 1)
    w = graph.const(f"{name}.weight", module.params["weight"].reshape(shape))
    b = graph.const(f"{name}.bias", module.params["bias"].reshape(shape))
    return graph.node("Add", [graph.node("Mul", [y, w], name), b], name)


class BatchNormConfig(HParams):
    eps: float = Field(1e-5, gt=0, description="added to σ̂² so that σ̂ stays away from 0")
    momentum: float | None = Field(
        0.1,
        ge=0,
        le=1,
        description="weight of each batch in the running averages (null: the cumulative average)",
    )
    affine: bool = Field(True, description="learnable per-channel γ (weight) and β (bias)")
    track_running_stats: bool = Field(
        True, description="keep running averages and use them at eval time (false: batch statistics always)"
    )


class _BatchNorm(Module):
    """BN(z)_c = β_c + γ_c · (z_c − μ̂_c)/σ̂_c, statistics of channel c over the batch and positions.

    Input z (N, C, *S), channels first. Training: μ̂_c and σ̂²_c are the mean and the biased variance
    of the m = N·|S| values of channel c in the batch, σ̂_c = √(σ̂²_c + ε), and the running averages
    follow PyTorch (momentum α = 0.1 by default; ``momentum: null`` gives the cumulative average):

        running_mean ← (1 − α) running_mean + α μ̂,   running_var ← (1 − α) running_var + α σ̂² · m/(m − 1)

    (the UNBIASED variance for the running one), and ``num_batches_tracked`` counts the batches.
    Eval: μ̂ and σ̂² are ``running_mean`` and ``running_var``, so each example is normalised alone.

    Backward (eq. 7.57), with x̂ = (z − μ̂)/σ̂ and g = γ ⊙ v the gradient reaching x̂. In training
    μ̂ and σ̂ depend on every example of the batch: ∂μ̂_c/∂z = 1/m and ∂σ̂_c/∂z = x̂/m, so

        ∂J/∂z = (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) / σ̂        (means over the m values of channel c)

    the same equation as LN's, over the batch instead of the features. In eval mode the statistics
    are constants: ∂J/∂z = g / σ̂. Always ∂J/∂γ_c = Σ v ⊙ x̂ and ∂J/∂β_c = Σ v (sums over batch and
    positions).
    """

    Config = BatchNormConfig
    cfg: BatchNormConfig
    bias_keys: ClassVar[tuple[str, ...]] = ("bias",)
    #: per-example input ranks accepted, and their layout for the error message
    ranks: ClassVar[tuple[int, ...]] = ()
    layout: ClassVar[str] = ""

    def output_shape(self, input_shape):
        if len(input_shape) not in self.ranks:
            raise ShapeError(
                f"{type(self).__name__} expects inputs of shape {self.layout} per example, "
                f"got {tuple(input_shape)}"
            )
        return tuple(input_shape)

    @property
    def channels(self) -> int:
        return int(_built_shape(self)[0])

    def init_params(self, rng):
        c = self.channels
        return {"weight": np.ones(c), "bias": np.zeros(c)} if self.cfg.affine else {}

    def init_buffers(self):
        if not self.cfg.track_running_stats:
            return {}
        c = self.channels
        return {
            "running_mean": np.zeros(c),
            "running_var": np.ones(c),
            "num_batches_tracked": np.zeros((), dtype=np.int64),
        }

    def _axes(self, z) -> tuple[int, ...]:
        return (0, *range(2, z.ndim))

    def _per_channel(self, a, z) -> np.ndarray:
        """A (C,) array shaped to broadcast against z (N, C, *S)."""
        return a.reshape((1, -1) + (1,) * (z.ndim - 2))

    def _batch_stats(self) -> bool:
        return self.training or not self.cfg.track_running_stats

    def forward(self, z):
        axes = self._axes(z)
        if self._batch_stats():
            m = z.size // z.shape[1] if z.shape[1] else 0
            if m <= 1:  # the unbiased variance needs two values (PyTorch refuses too)
                raise ShapeError(
                    f"{type(self).__name__} needs more than one value per channel in training mode, "
                    f"got a batch of shape {z.shape}: use a batch size (and a training-set size "
                    f"modulo it) above 1"
                )
            mu = z.mean(axis=axes, keepdims=True)
            var = ((z - mu) ** 2).mean(axis=axes, keepdims=True)
            if self.training and self.cfg.track_running_stats:
                self._update_running(mu.reshape(-1), var.reshape(-1), m)
        else:
            mu = self._per_channel(self.buffers["running_mean"], z).astype(z.dtype, copy=False)
            var = self._per_channel(self.buffers["running_var"], z).astype(z.dtype, copy=False)
        self._rsigma = 1.0 / np.sqrt(var + z.dtype.type(self.cfg.eps))
        self._xhat = (z - mu) * self._rsigma
        self._batch = self._batch_stats()
        if not self.cfg.affine:
            return self._xhat
        w, b = self._per_channel(self.params["weight"], z), self._per_channel(self.params["bias"], z)
        return self._xhat * w + b

    def _update_running(self, mu, var, m) -> None:
        buf = self.buffers
        buf["num_batches_tracked"] += 1
        a = self.cfg.momentum
        if a is None:
            a = 1.0 / float(buf["num_batches_tracked"])
        buf["running_mean"] *= 1 - a
        buf["running_mean"] += a * mu
        buf["running_var"] *= 1 - a
        buf["running_var"] += a * var * (m / (m - 1))

    def statistics(self, z):
        """μ̂_c, σ̂_c of the batch averaged over channels, and the running averages' channel means."""
        out = set_statistics(np.moveaxis(z, 1, 0).reshape(z.shape[1], -1), 1)
        if self.cfg.track_running_stats:
            out["running_mean"] = float(np.mean(self.buffers["running_mean"]))
            out["running_var"] = float(np.mean(self.buffers["running_var"]))
        return out

    def backward(self, v):
        xhat, axes = self._xhat, self._axes(v)
        g = v * self._per_channel(self.params["weight"], v) if self.cfg.affine else v
        if self.cfg.affine:
            self.grads["weight"] += np.sum(v * xhat, axis=axes)
            self.grads["bias"] += np.sum(v, axis=axes)
        if not self._batch:
            return g * self._rsigma
        return _normalize_backward(g, xhat, self._rsigma, axes)

    # -- what inspect, trace and export ask ------------------------------------------------------
    def describe(self):
        c, d = self.channels, int(np.prod(self.input_shape))
        formula = f"2·C = 2·{c} = {2 * c}" if self.cfg.affine else "0"
        # forward: Σz, Σ(z−μ̂)², (z−μ̂)/σ̂, γ·x̂ + β; backward: Σv, Σv⊙x̂, g, the combination
        return {"formula": formula, "macs_forward": 4 * d, "macs_backward": 5 * d, "saved": d + c}

    def trace_equations(self):
        return (
            "u = β + γ (z − μ̂)/σ̂, μ̂, σ̂² per channel over batch and positions (eval: running averages)",
            "∂J/∂z = (γ/σ̂)(v − mean v − ẑ·mean(v⊙ẑ)) over the batch (eval: γv/σ̂); ∂J/∂γ = Σ v⊙ẑ, ∂J/∂β = Σ v",
        )

    def torch_spec(self):
        cfg = self.cfg
        return TorchSpec(
            type(self).__name__,
            (self.channels,),
            {
                "eps": cfg.eps,
                "momentum": cfg.momentum,
                "affine": cfg.affine,
                "track_running_stats": cfg.track_running_stats,
            },
        )

    def to_onnx(self, graph, x, name):
        """BatchNormalization in inference mode, the running averages as its mean and var; with
        ``track_running_stats: false`` the batch statistics, spelled out with ReduceMean."""
        if not self.cfg.track_running_stats:
            axes = [0, *range(2, len(self.input_shape) + 1)]
            return _onnx_affine(self, graph, _onnx_normalize(graph, x, name, axes, self.cfg.eps), name)
        c = self.channels
        if self.cfg.affine:
            scale = graph.const(f"{name}.weight", self.params["weight"])
            bias = graph.const(f"{name}.bias", self.params["bias"])
        else:
            scale, bias = (
                graph.const(f"{name}/unit_scale", np.ones(c)),
                graph.const(f"{name}/zero_bias", np.zeros(c)),
            )
        mean = graph.const(f"{name}.running_mean", self.buffers["running_mean"])
        var = graph.const(f"{name}.running_var", self.buffers["running_var"])
        return graph.node(
            "BatchNormalization", [x, scale, bias, mean, var], name, epsilon=float(self.cfg.eps)
        )


@modules.register("BatchNorm1d", "BatchNorm", "batch_norm")
class BatchNorm1d(_BatchNorm):
    __doc__ = _BatchNorm.__doc__
    notes_name = "BatchNorm1d"
    ranks = (1, 2)
    layout = "(C,) or (C, L)"

    @classmethod
    def examples(cls):
        return [
            ({}, (4,)),
            ({}, (3, 5)),
            ({"affine": False}, (3,)),
            ({"momentum": None, "eps": 1e-3}, (2, 4)),
            ({"track_running_stats": False}, (3, 2)),
        ]


@modules.register("BatchNorm2d")
class BatchNorm2d(_BatchNorm):
    __doc__ = _BatchNorm.__doc__
    notes_name = "BatchNorm2d"
    ranks = (3,)
    layout = "(C, H, W)"

    @classmethod
    def examples(cls):
        return [({}, (2, 3, 3)), ({"affine": False, "eps": 1e-3, "momentum": 0.3}, (3, 2, 2))]


class GroupNormConfig(HParams):
    num_groups: int = Field(..., ge=1, description="G: the channels are split into G groups of C/G")
    eps: float = Field(1e-5, gt=0, description="added to σ̂² so that σ̂ stays away from 0")
    affine: bool = Field(True, description="learnable per-channel γ (weight) and β (bias)")


@modules.register("GroupNorm", "group_norm")
class GroupNorm(Module):
    """GN(z) = β_c + γ_c · (z − μ̂)/σ̂, statistics of each example over one group of C/G channels.

    Input z (N, C, *S), C divisible by G = ``num_groups``. For each example n and group g, μ̂ and σ̂²
    are the mean and biased variance of the D = (C/G)·|S| values of its channels, σ̂ = √(σ̂² + ε);
    γ and β are per channel (PyTorch's ``nn.GroupNorm``). Nothing depends on the batch, so training
    and eval are the same. Special cases: G = 1 is LN over (C, *S) with per-channel γ, β (eq. 7.42's
    statistics); G = C is InstanceNorm (each channel of each example normalised on its own).

    Backward (eq. 7.57), with x̂ = (z − μ̂)/σ̂ and g = γ ⊙ v, through μ̂ and σ̂ of the group
    (∂μ̂/∂z = 1/D, ∂σ̂/∂z = x̂/D):

        ∂J/∂z = (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) / σ̂      (means over the D values of the group)
        ∂J/∂γ_c = Σ v ⊙ x̂,   ∂J/∂β_c = Σ v               (sums over batch and positions)
    """

    notes_name = "GroupNorm"
    batch_split = "yes"
    Config = GroupNormConfig
    cfg: GroupNormConfig
    bias_keys: ClassVar[tuple[str, ...]] = ("bias",)

    def output_shape(self, input_shape):
        if len(input_shape) == 0:
            raise ShapeError("GroupNorm expects inputs of shape (C, *S) per example, got shape ()")
        c, g = input_shape[0], self.cfg.num_groups
        if c % g:
            raise ShapeError(f"GroupNorm: {c} channels cannot be split into num_groups={g} equal groups")
        return tuple(input_shape)

    def init_params(self, rng):
        c = self.input_shape[0]
        return {"weight": np.ones(c), "bias": np.zeros(c)} if self.cfg.affine else {}

    def _per_channel(self, a, z):
        return a.reshape((1, -1) + (1,) * (z.ndim - 2))

    def forward(self, z):
        x = z.reshape(len(z), self.cfg.num_groups, -1)
        mu = x.mean(axis=2, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=2, keepdims=True)
        self._rsigma = 1.0 / np.sqrt(var + z.dtype.type(self.cfg.eps))
        self._xhat = ((x - mu) * self._rsigma).reshape(z.shape)
        if not self.cfg.affine:
            return self._xhat
        return self._xhat * self._per_channel(self.params["weight"], z) + self._per_channel(
            self.params["bias"], z
        )

    def statistics(self, z):
        """μ̂ and σ̂ of each example's groups, averaged over examples and groups."""
        return set_statistics(z.reshape(len(z), self.cfg.num_groups, -1), 2)

    def backward(self, v):
        xhat = self._xhat
        g = v * self._per_channel(self.params["weight"], v) if self.cfg.affine else v
        if self.cfg.affine:
            axes = (0, *range(2, v.ndim))
            self.grads["weight"] += np.sum(v * xhat, axis=axes)
            self.grads["bias"] += np.sum(v, axis=axes)
        shape = (len(v), self.cfg.num_groups, -1)
        dz = _normalize_backward(g.reshape(shape), xhat.reshape(shape), self._rsigma, (2,))
        return dz.reshape(v.shape)

    def describe(self):
        c, d = self.input_shape[0], int(np.prod(self.input_shape))
        formula = f"2·C = 2·{c} = {2 * c}" if self.cfg.affine else "0"
        return {
            "formula": formula,
            "macs_forward": 4 * d,
            "macs_backward": 5 * d,
            "saved": d + self.cfg.num_groups,
        }

    @classmethod
    def examples(cls):
        return [
            ({"num_groups": 2}, (4,)),
            ({"num_groups": 2}, (4, 3)),
            ({"num_groups": 1}, (3, 2, 2)),
            ({"num_groups": 3, "affine": False, "eps": 1e-3}, (3, 4)),
        ]

    def trace_equations(self):
        return (
            "u = β + γ (z − μ̂)/σ̂, μ̂, σ̂² per example over each group of C/G channels",
            "∂J/∂z = (γ/σ̂)(v − mean v − ẑ·mean(v⊙ẑ)) over the group; ∂J/∂γ = Σ v⊙ẑ, ∂J/∂β = Σ v",
        )

    def torch_spec(self):
        c = self.input_shape[0]
        return TorchSpec(
            "GroupNorm", (self.cfg.num_groups, c), {"eps": self.cfg.eps, "affine": self.cfg.affine}
        )

    def to_onnx(self, graph, x, name):
        """Its decomposition in opset 17 ops: Reshape to (N, G, −1), ReduceMean for μ̂ and σ̂²,
        (z − μ̂)/√(σ̂² + ε), Reshape back (Shape of z), then γ, β per channel."""
        groups = graph.const(f"{name}/groups", np.array([0, self.cfg.num_groups, -1]), dtype=np.int64)
        grouped = graph.node("Reshape", [x, groups], name)
        y = _onnx_normalize(graph, grouped, name, [2], self.cfg.eps)
        y = graph.node("Reshape", [y, graph.node("Shape", [x], name)], name)
        return _onnx_affine(self, graph, y, name)
