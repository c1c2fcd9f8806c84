"""Optimisers that update parameters in place: SGD (momentum, Nesterov, weight decay) and Adam.

Each rule is a class registered under the name a config's ``optimizer.type`` gives
(``@optimizers.register("sgd")``). The update rules are PyTorch's (``torch.optim.SGD`` with
dampening 0, ``torch.optim.Adam`` without amsgrad), so a run here and the same run in PyTorch
follow the same trajectory up to rounding. Weight decay is L2 added to the gradient (g ← g + λθ), as in both of those, not AdamW's decoupled decay.

The whole model at once: ``make_optimizer`` first lays the model's parameters out flat
(``Module.flatten_parameters``: one buffer per dtype, each layer's arrays views into it), and the
optimiser updates each whole buffer with a dozen ufunc calls instead of a dozen per parameter
tensor; its state (momentum, m, v) is laid out the same way. Parameters given as separate arrays
are updated one by one with the same code. Every operation is elementwise, so both ways each
element goes through exactly the same arithmetic: the results are bit for bit the same.

Memory: besides the state a rule needs (SGD's momentum, Adam's m and v), a step uses only two small
scratch buffers of at most ``CHUNK`` elements: a buffer is updated a slice of ``CHUNK`` elements at a
time, so temporaries such as g + λθ or η·g never take a parameter's size (a training step's peak
memory stays near params + grads + state + saved activations). Nothing is allocated per step, and
the gradients are read, never modified.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from nncli.config.schema import OptimizerConfig
from nncli.core.errors import UserError
from nncli.core.flat import FlatParameters, Segment, per_array_segments
from nncli.core.registry import optimizers

#: elements per slice of an update: 128 kB of float32, so the two scratch slices and the slices of
#: θ, g and the state stay in the L2 cache while the few ufuncs of one update pass over them
CHUNK = 32768


class Optimizer(ABC):
    """Base class: holds ``(name, parameter, gradient)`` triples as ``Chain.parameters()`` yields them.

    ``params`` and ``grads`` are referenced, not copied: the chain zeroes and refills the same gradient
    arrays every step and ``step`` reads them from there. Given ``flat`` (the model's
    ``FlatParameters``, whose views the triples are), the updates run over its buffers.
    """

    #: prefix of this optimiser's keys in ``state_dict``
    kind = ""

    def __init__(
        self,
        params: list[tuple[str, np.ndarray, np.ndarray]],
        cfg: OptimizerConfig,
        flat: FlatParameters | None = None,
    ):
        self.cfg = cfg
        self.names = [n for n, _, _ in params]
        self.params = [p for _, p, _ in params]
        self.grads = [g for _, _, g in params]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"parameter names must be unique, got {self.names}")
        for n, p, g in params:
            if not (p.flags.c_contiguous and g.flags.c_contiguous):
                raise ValueError(f"parameter {n!r} and its gradient must be C-contiguous arrays")
        #: the buffers the updates run over: the model's flat ones, or each parameter's own memory
        self.segments: list[Segment] = (
            flat.segments
            if flat is not None and flat.covers(self.params, self.grads)
            else per_array_segments(self.params, self.grads)
        )
        # two scratch slices per dtype (g + λθ, and η·g or g + μb), no larger than the largest buffer
        size = min(CHUNK, max((s.params.size for s in self.segments), default=0))
        self._scratch = {
            dt: (np.empty(size, dt), np.empty(size, dt)) for dt in {s.dtype for s in self.segments}
        }
        self.steps = 0

    def _slot(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """A zeroed state slot (momentum, m, v): one buffer per segment, and a view per parameter."""
        flats, views = [], [np.empty(0)] * len(self.params)
        for seg in self.segments:
            buf, parts = seg.zeros_like()
            flats.append(buf)
            for i, view in parts:
                views[i] = view
        return flats, views

    def _slices(self, k: int, *state: np.ndarray):
        """Yield ``(θ, g, *state, a, b)`` as matching slices of at most ``CHUNK`` elements of segment
        ``k``'s parameters, gradients and ``state`` buffers, with ``a``, ``b`` scratch slices as long."""
        seg = self.segments[k]
        flats = (seg.params, seg.grads, *state)
        a, b = self._scratch[seg.dtype]
        n, step = seg.params.size, max(1, a.size)  # CHUNK, or the largest buffer's size if smaller
        for lo in range(0, n, step):
            hi = min(lo + step, n)
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

    def arrays(self) -> list[np.ndarray]:
        """The parameters and the optimiser state as the few buffers they live in (for whole-model
        checks, such as the finiteness of both after an update)."""
        slots = self._flat_buffers() or list(self._buffers().values())  # a subclass may keep only the latter
        return [s.params for s in self.segments] + [b for slot in slots for b in slot]

    def grad_arrays(self) -> list[np.ndarray]:
        """The gradients as the few buffers they live in (for their norm and clipping)."""
        return [s.grads for s in self.segments]

    # -- checkpoints ------------------------------------------------------------------------------
    def _buffers(self) -> dict[str, list[np.ndarray]]:
        """Named per-parameter state arrays (``{'momentum': [...]}``): views of ``_flat_buffers``."""
        return {}

    def _flat_buffers(self) -> list[list[np.ndarray]]:
        """Each state slot as its buffers, one per segment."""
        return []

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

    def __init__(self, params, cfg, flat=None):
        super().__init__(params, cfg, flat)
        self._momentum, self.momentum = self._slot() if cfg.momentum > 0 else ([], [])

    def _buffers(self):
        return {"momentum": self.momentum} if self.momentum else {}

    def _flat_buffers(self):
        return [self._momentum] if self._momentum else []

    def step(self, lr: float) -> None:
        mu, nesterov = self.cfg.momentum, self.cfg.nesterov
        for k in range(len(self.segments)):
            state = (self._momentum[k],) if mu > 0 else ()
            for p, g, *b, s1, s2 in self._slices(k, *state):
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

    def __init__(self, params, cfg, flat=None):
        super().__init__(params, cfg, flat)
        self._m, self.m = self._slot()
        self._v, self.v = self._slot()

    def _buffers(self):
        return {"adam.m": self.m, "adam.v": self.v}

    def _flat_buffers(self):
        return [self._m, self._v]

    def step(self, lr: float) -> None:
        b1, b2 = self.cfg.betas
        eps = self.cfg.eps
        self.steps += 1
        t = self.steps
        step_size = lr / (1 - b1**t)
        bc2_sqrt = math.sqrt(1 - b2**t)
        for k in range(len(self.segments)):
            for p, g, m, v, s1, d in self._slices(k, self._m[k], self._v[k]):
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
    """The optimiser registered as ``cfg.type`` over every parameter of ``chain`` (a built ``Chain``),
    whose parameters are laid out flat first (one buffer per dtype) when it can do that."""
    flatten = getattr(chain, "flatten_parameters", None)
    flat = flatten() if flatten is not None else None
    return optimizers.lookup(cfg.type)(list(chain.parameters()), cfg, flat)


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
    """True when no array holds a NaN or Inf: one BLAS pass per array (Σ a², finite only when every
    value is), a second only when that sum overflows."""
    # one errstate for the whole walk: entering it costs about as much as summing a small array,
    # and this runs after every training step over the parameters and the optimiser state
    with np.errstate(over="ignore", invalid="ignore"):
        for a in arrays:
            if a.size == 0 or a.dtype.kind not in "fc":
                continue
            if a.dtype.kind == "f":
                flat = a.reshape(-1)
                total = float(np.dot(flat, flat))  # BLAS: 5× faster than numpy's float32 sum
            else:
                total = abs(complex(a.sum()))
            if math.isfinite(total):
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
