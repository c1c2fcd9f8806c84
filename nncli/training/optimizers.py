"""Optimisers that update parameters in place: SGD (momentum, Nesterov, weight decay) and Adam.

Each rule is a class registered under the name a config's ``optimizer.type`` gives
(``@optimizers.register("sgd")``). The update rules are PyTorch's (``torch.optim.SGD`` with
dampening 0, ``torch.optim.Adam`` without amsgrad), so a run here and the same run in PyTorch
follow the same trajectory up to rounding. Weight decay is L2 added to the gradient (g ← g + λθ), as in both of those, not AdamW's decoupled decay.

Memory: besides the state a rule needs (SGD's momentum, Adam's m and v), a step uses only two small
scratch buffers of at most ``CHUNK`` elements, shared by all parameters: each parameter is updated a
slice of ``CHUNK`` elements at a time, so temporaries such as g + λθ or η·g never take a parameter's
size (a training step's peak memory stays near params + grads + state + saved activations). The
slices run the same elementwise operations as whole-array ufuncs would, so the result is bit for bit
the same. Nothing is allocated per step, and the gradients are read, never modified.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from nncli.config.schema import OptimizerConfig
from nncli.core.errors import UserError
from nncli.core.registry import optimizers

#: elements per slice of a parameter's update: 128 kB of float32, so the two scratch slices and the
#: slices of θ, g and the state stay in the L2 cache while the few ufuncs of one update pass over them
CHUNK = 32768


class Optimizer(ABC):
    """Base class: holds ``(name, parameter, gradient)`` triples as ``Chain.parameters()`` yields them.

    ``params`` and ``grads`` are referenced, not copied: the chain zeroes and refills the same gradient
    arrays every step and ``step`` reads them from there.
    """

    #: prefix of this optimiser's keys in ``state_dict``
    kind = ""

    def __init__(self, params: list[tuple[str, np.ndarray, np.ndarray]], cfg: OptimizerConfig):
        self.cfg = cfg
        self.names = [n for n, _, _ in params]
        self.params = [p for _, p, _ in params]
        self.grads = [g for _, _, g in params]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"parameter names must be unique, got {self.names}")
        for n, p, g in params:
            if not (p.flags.c_contiguous and g.flags.c_contiguous):
                raise ValueError(f"parameter {n!r} and its gradient must be C-contiguous arrays")
        # two scratch slices per dtype (g + λθ, and η·g or g + μb), no larger than the largest parameter
        size = min(CHUNK, max((p.size for p in self.params), default=0))
        self._scratch = {
            dt: (np.empty(size, dt), np.empty(size, dt)) for dt in {p.dtype for p in self.params}
        }
        self.steps = 0

    def _slices(self, i: int, *state: np.ndarray):
        """Yield ``(θ, g, *state, a, b)`` as matching flat slices of at most ``CHUNK`` elements of
        parameter ``i``, its gradient and ``state`` buffers, with ``a``, ``b`` scratch slices as long."""
        p = self.params[i]
        flats = [p.reshape(-1), self.grads[i].reshape(-1)] + [s.reshape(-1) for s in state]
        a, b = self._scratch[p.dtype]
        step = a.size  # CHUNK, or the largest parameter's size if smaller
        for lo in range(0, p.size, step):
            hi = min(lo + step, p.size)
            yield (*(f[lo:hi] for f in flats), a[: hi - lo], b[: hi - lo])

    def _decayed(self, p: np.ndarray, g: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The gradient with L2 weight decay added: g + λθ (written to ``out`` when λ > 0), one slice."""
        wd = self.cfg.weight_decay
        if wd == 0.0:
            return g
        np.multiply(p, wd, out=out)
        np.add(out, g, out=out)
        return out

    @abstractmethod
    def step(self, lr: float) -> None:
        """Update every parameter in place from its gradient, with learning rate ``lr``."""

    # -- checkpoints ------------------------------------------------------------------------------
    def _buffers(self) -> dict[str, list[np.ndarray]]:
        """Named per-parameter state buffers (``{'momentum': [...]}``)."""
        return {}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat copies of the state: ``'<kind>.step'`` and ``'<buffer>.<param name>'`` arrays."""
        state = {f"{self.kind}.step": np.array(self.steps, dtype=np.int64)}
        for buf_name, bufs in self._buffers().items():
            for name, b in zip(self.names, bufs):
                state[f"{buf_name}.{name}"] = b.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a ``state_dict`` in place; keys and shapes must match this optimiser exactly."""
        want = set(self.state_dict())
        missing, extra = sorted(want - set(state)), sorted(set(state) - want)
        if missing or extra:
            raise UserError(
                f"optimizer state does not match this {self.kind} optimizer and model: "
                f"missing {missing}, unexpected {extra}"
            )
        for buf_name, bufs in self._buffers().items():
            for name, b in zip(self.names, bufs):
                src = np.asarray(state[f"{buf_name}.{name}"])
                if src.shape != b.shape:
                    raise UserError(
                        f"optimizer state '{buf_name}.{name}' has shape {src.shape}, "
                        f"the parameter has {b.shape}"
                    )
                b[...] = src
        self.steps = int(np.asarray(state[f"{self.kind}.step"]))


@optimizers.register("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule with dampening 0. With g = ∇θ + λθ:

        momentum μ = 0:   θ ← θ − η g
        μ > 0:            b ← g on the first step, then b ← μ b + g
                          θ ← θ − η b            (heavy ball)
                          θ ← θ − η (g + μ b)    (Nesterov)

    State: ``momentum.<param>`` buffers (when μ > 0) and ``sgd.step``.
    """

    kind = "sgd"

    def __init__(self, params, cfg):
        super().__init__(params, cfg)
        self.momentum = [np.zeros_like(p) for p in self.params] if cfg.momentum > 0 else []

    def _buffers(self):
        return {"momentum": self.momentum} if self.momentum else {}

    def step(self, lr: float) -> None:
        mu, nesterov = self.cfg.momentum, self.cfg.nesterov
        for i in range(len(self.params)):
            state = (self.momentum[i],) if mu > 0 else ()
            for p, g, *b, s1, s2 in self._slices(i, *state):
                g = self._decayed(p, g, s1)  # s1 holds g + λθ when λ > 0
                if mu > 0:
                    b = b[0]
                    if self.steps == 0:
                        b[...] = g  # PyTorch starts the buffer at the first gradient, not at 0
                    else:
                        np.multiply(b, mu, out=b)
                        np.add(b, g, out=b)
                    if nesterov:
                        np.multiply(b, mu, out=s2)
                        np.add(g, s2, out=s2)  # g + μ b
                        g = s2
                    else:
                        g = b
                d = s2 if g is s2 else s1  # s1 is free once g + λθ has been used
                np.multiply(g, lr, out=d)  # g may be d itself: an elementwise ufunc allows that
                np.subtract(p, d, out=p)
        self.steps += 1


@optimizers.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba) as ``torch.optim.Adam``: with g = ∇θ + λθ and t the step count (from 1),

        m ← m + (1 − β₁)(g − m)          v ← β₂ v + (1 − β₂) g²
        θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

    State: ``adam.m.<param>``, ``adam.v.<param>`` and ``adam.step``.
    """

    kind = "adam"

    def __init__(self, params, cfg):
        super().__init__(params, cfg)
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    def _buffers(self):
        return {"adam.m": self.m, "adam.v": self.v}

    def step(self, lr: float) -> None:
        b1, b2 = self.cfg.betas
        eps = self.cfg.eps
        self.steps += 1
        t = self.steps
        step_size = lr / (1 - b1**t)
        bc2_sqrt = math.sqrt(1 - b2**t)
        for i in range(len(self.params)):
            for p, g, m, v, s1, d in self._slices(i, self.m[i], self.v[i]):
                g = self._decayed(p, g, s1)
                # m ← m + (1−β₁)(g − m): PyTorch's lerp form, same rounding
                np.subtract(g, m, out=d)
                np.multiply(d, 1 - b1, out=d)
                np.add(m, d, out=m)
                # v ← β₂ v + (1−β₂) g²  (d is free again)
                np.multiply(v, b2, out=v)
                np.multiply(g, g, out=d)
                np.multiply(d, 1 - b2, out=d)
                np.add(v, d, out=v)
                # d ← √v / √(1−β₂ᵗ) + ε;  θ ← θ − step_size · m / d
                np.sqrt(v, out=d)
                np.divide(d, bc2_sqrt, out=d)
                np.add(d, eps, out=d)
                np.divide(m, d, out=d)
                np.multiply(d, step_size, out=d)
                np.subtract(p, d, out=p)


def make_optimizer(cfg: OptimizerConfig, chain) -> Optimizer:
    """The optimiser registered as ``cfg.type`` over every parameter of ``chain`` (a built ``Chain``)."""
    return optimizers.lookup(cfg.type)(list(chain.parameters()), cfg)


def global_norm(arrays) -> float:
    """‖g‖ = √(Σ_i ‖g_i‖²) over ``arrays``, without overflow: NaN/Inf only when a value is NaN/Inf.

    The fast path sums each array's dot product with itself in its own dtype. When that overflows
    (float32 values above ~1e19 square past float32's range) the norm is computed again, scaled:
    s = max |g|, ‖g‖ = s·√(Σ (g/s)²) in float64, so finite gradients always have a finite norm
    (up to float64's 1.8e308).
    """
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow here only selects the slow path
        for g in arrays:
            flat = g.reshape(-1)
            total += float(np.dot(flat, flat))
    if math.isfinite(total):
        return math.sqrt(total)
    scale = 0.0
    for g in arrays:
        if g.size:
            big = max(abs(float(g.max())), abs(float(g.min())))  # NaN propagates through max/min
            if not math.isfinite(big):
                return big
            scale = max(scale, big)
    if scale == 0.0:
        return 0.0
    total = 0.0
    for g in arrays:
        flat = g.reshape(-1).astype(np.float64) / scale
        total += float(np.dot(flat, flat))
    return scale * math.sqrt(total)


def all_finite(arrays) -> bool:
    """True when no array holds a NaN or Inf (one pass per array; a second only when its sum overflows)."""
    # one errstate for the whole walk: entering it costs about as much as summing a small array,
    # and this runs after every training step over every parameter and optimiser slot
    with np.errstate(over="ignore", invalid="ignore"):
        for a in arrays:
            if a.size == 0 or a.dtype.kind not in "fc":
                continue
            if math.isfinite(float(a.sum())):
                continue
            if not (math.isfinite(float(a.max())) and math.isfinite(float(a.min()))):
                return False
    return True


def clip_grad_norm(grads: list[np.ndarray], max_norm: float) -> float:
    """Scale ``grads`` in place so that their joint L2 norm is at most ``max_norm``; return the norm before.

    As ``torch.nn.utils.clip_grad_norm_``: ‖g‖ = √(Σ_i ‖g_i‖²) (computed without overflow, see
    ``global_norm``), every g_i multiplied by min(1, max_norm / (‖g‖ + 1e-6)). One difference: a
    non-finite norm (NaN/Inf in a gradient) leaves the gradients as they are, so the caller's
    non-finite handling sees the original values.
    """
    norm = global_norm(grads)
    if not math.isfinite(norm):
        return norm
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads:
            np.multiply(g, coef, out=g)
    return norm
