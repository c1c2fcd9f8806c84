"""Optimisers that update parameters in place: SGD (momentum, Nesterov, weight decay) and Adam.

The update rules are PyTorch's (``torch.optim.SGD`` with dampening 0, ``torch.optim.Adam`` without
amsgrad), so a run here and the same run in PyTorch follow the same trajectory up to rounding. Weight
decay is L2 added to the gradient (g ← g + λθ), as in both of those, not AdamW's decoupled decay.

Every buffer is allocated once in ``__init__`` and updated with ``out=`` ufuncs, so a step allocates
nothing per parameter. The gradients are read, never modified.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import UserError
from .schema import OptimizerConfig


class Optimizer:
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
        # scratch space for g + λθ, so that the caller's gradients stay untouched
        self._scratch = [np.empty_like(p) for p in self.params]
        self.steps = 0

    def _decayed(self, i: int) -> np.ndarray:
        """The gradient with L2 weight decay added: g + λθ (in scratch space when λ > 0)."""
        g, wd = self.grads[i], self.cfg.weight_decay
        if wd == 0.0:
            return g
        out = self._scratch[i]
        np.multiply(self.params[i], wd, out=out)
        np.add(out, g, out=out)
        return out

    def step(self, lr: float) -> None:
        """Update every parameter in place from its gradient, with learning rate ``lr``."""
        raise NotImplementedError

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
            raise UserError(f"optimizer state does not match this {self.kind} optimizer and model: "
                            f"missing {missing}, unexpected {extra}")
        for buf_name, bufs in self._buffers().items():
            for name, b in zip(self.names, bufs):
                src = np.asarray(state[f"{buf_name}.{name}"])
                if src.shape != b.shape:
                    raise UserError(f"optimizer state '{buf_name}.{name}' has shape {src.shape}, "
                                    f"the parameter has {b.shape}")
                b[...] = src
        self.steps = int(np.asarray(state[f"{self.kind}.step"]))


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
        # g + μ b needs its own buffer: the scratch one may hold g
        self._nesterov = [np.empty_like(p) for p in self.params] if cfg.nesterov else [None] * len(self.params)

    def _buffers(self):
        return {"momentum": self.momentum} if self.momentum else {}

    def step(self, lr: float) -> None:
        mu, nesterov = self.cfg.momentum, self.cfg.nesterov
        for i, p in enumerate(self.params):
            g = self._decayed(i)
            if mu > 0:
                b = self.momentum[i]
                if self.steps == 0:
                    b[...] = g           # PyTorch starts the buffer at the first gradient, not at 0
                else:
                    np.multiply(b, mu, out=b)
                    np.add(b, g, out=b)
                if nesterov:
                    d = self._nesterov[i]
                    np.multiply(b, mu, out=d)
                    np.add(g, d, out=d)  # g + μ b
                    g = d
                else:
                    g = b
            d = self._nesterov[i] if g is self._nesterov[i] else self._scratch[i]
            np.multiply(g, lr, out=d)    # g may be d itself: an elementwise ufunc allows that
            np.subtract(p, d, out=p)
        self.steps += 1


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
        self._denom = [np.empty_like(p) for p in self.params]

    def _buffers(self):
        return {"adam.m": self.m, "adam.v": self.v}

    def step(self, lr: float) -> None:
        b1, b2 = self.cfg.betas
        eps = self.cfg.eps
        self.steps += 1
        t = self.steps
        step_size = lr / (1 - b1 ** t)
        bc2_sqrt = math.sqrt(1 - b2 ** t)
        for i, p in enumerate(self.params):
            g = self._decayed(i)
            m, v, d = self.m[i], self.v[i], self._denom[i]
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


_OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(cfg: OptimizerConfig, chain) -> Optimizer:
    """The optimiser ``cfg.type`` over every parameter of ``chain`` (a built ``Chain``)."""
    return _OPTIMIZERS[cfg.type](list(chain.parameters()), cfg)


def clip_grad_norm(grads: list[np.ndarray], max_norm: float) -> float:
    """Scale ``grads`` in place so that their joint L2 norm is at most ``max_norm``; return the norm before.

    As ``torch.nn.utils.clip_grad_norm_``: ‖g‖ = √(Σ_i ‖g_i‖²), every g_i multiplied by
    min(1, max_norm / (‖g‖ + 1e-6)). One difference: a non-finite norm (NaN/Inf in a gradient) leaves
    the gradients as they are, so the caller's non-finite handling sees the original values.
    """
    total = 0.0
    for g in grads:
        flat = g.reshape(-1)
        total += float(np.dot(flat, flat))
    norm = math.sqrt(total)
    if not math.isfinite(norm):
        return norm
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads:
            np.multiply(g, coef, out=g)
    return norm
