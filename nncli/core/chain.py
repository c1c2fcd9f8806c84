"""The chain of modules and its loss: forward pass (F) and backward pass (notes §7.4.2).

Forward computes u[1..k] in order, each module keeping what its backward needs; the backward pass
walks the modules in reverse, turning ∂J/∂u[i] into ∂J/∂u[i-1] and adding each module's ∂J/∂θ[i].
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from nncli.core.losses import Loss
from nncli.core.module import Module


class Chain:
    """``modules`` applied in order to batches of shape (N, *input_shape); ``loss`` may be None."""

    def __init__(
        self, modules: list[Module], loss: Loss | None = None, input_shape: tuple[int, ...] | None = None
    ):
        self.modules = list(modules)
        self.loss = loss
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.keep_outputs = False  # set by `inspect --trace` to keep every u[i]
        self.outputs: list[np.ndarray] = []

    # -- building ---------------------------------------------------------------------------
    def build(self, input_shape, rng: np.random.Generator, dtype=np.float64) -> Chain:
        """Build every module in turn, feeding each the output shape of the one before."""
        self.input_shape = tuple(input_shape)
        shape = self.input_shape
        for m in self.modules:
            m.build(shape, rng, dtype)
            shape = m.output_shape(shape)
        if self.loss is not None:
            self.loss.check_output(shape)
        return self

    @property
    def output_shape(self) -> tuple[int, ...]:
        shape = self.input_shape
        for m in self.modules:
            shape = m.output_shape(shape)
        return shape

    @property
    def dtype(self):
        return self.modules[0].dtype if self.modules else np.dtype(np.float64)

    # -- computation --------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """u[0] = x, u[i] = M_i(u[i-1]); returns u[k-1], the model output h (N, *output_shape)."""
        u = np.asarray(x, dtype=self.dtype)
        if self.keep_outputs:
            self.outputs = [u]
        for m in self.modules:
            u = m.forward(u)
            if self.keep_outputs:
                self.outputs.append(u)
        return u

    __call__ = forward

    def backward(self, v: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Given v = ∂J/∂h, accumulate every ∂J/∂θ[i] and return ∂J/∂x.

        With ``input_grad=False`` ∂J/∂x is not wanted (training never reads it), so the pass stops
        at the first module that has parameters and asks it for ∂J/∂θ only (``backward_params``):
        for an MLP that skips its largest product, v W with W (hidden, input), as PyTorch does for
        inputs without ``requires_grad``. Returns None then.
        """
        stop = 0 if input_grad else self._first_trainable()
        if stop is None:  # nothing to train: no backward work at all
            return None
        for i in range(len(self.modules) - 1, stop - 1, -1):
            m = self.modules[i]
            if i == stop and not input_grad:
                m.backward_params(v)
                return None
            v = m.backward(v)
        return v

    def _first_trainable(self) -> int | None:
        """Index of the first module with parameters (its own or in a sub-chain), or None."""
        for i, m in enumerate(self.modules):
            if m.params or any(c.param_count for _, c in m.children()):
                return i
        return None

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Zero the gradients, run forward, the loss and backward; return (J, model output h)."""
        self.zero_grads()
        h = self.forward(x)
        J = self.loss.forward(h, y)
        self.backward(self.loss.backward(), input_grad=False)
        return J, h

    def zero_grads(self) -> None:
        for m in self.modules:
            m.zero_grads()
            for _, c in m.children():
                _zero_tree(c)

    def train(self, mode: bool = True) -> Chain:
        for m in self.modules:
            m.train(mode)
        return self

    def eval(self) -> Chain:
        return self.train(False)

    # -- parameters ---------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(PyTorch-style dotted name, module) for every module, depth first."""
        for i, m in enumerate(self.modules):
            name = f"{prefix}{i}"
            yield name, m
            for child_name, child in m.children():
                yield from child.named_modules(f"{name}.{child_name}.")

    def parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(torch state_dict key, parameter, gradient), e.g. ("0.weight", W, ∂J/∂W)."""
        for name, m in self.named_modules():
            for key, p in m.params.items():
                yield f"{name}.{key}", p, m.grads[key]

    @property
    def param_count(self) -> int:
        return int(sum(p.size for _, p, _ in self.parameters()))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, named and shaped like ``torch.nn.Sequential.state_dict()``."""
        return {k: p.copy() for k, p, _ in self.parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy ``state`` into the parameters in place; with ``strict`` keys and shapes must match."""
        own = {k: p for k, p, _ in self.parameters()}
        if strict:
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            if missing or extra:
                raise KeyError(f"state dict does not match the model: missing {missing}, unexpected {extra}")
        for k, p in own.items():
            if k in state:
                src = np.asarray(state[k])
                if src.shape != p.shape:
                    raise ValueError(f"{k}: expected shape {p.shape}, got {src.shape}")
                p[...] = src

    def __repr__(self) -> str:
        lines = [f"  ({i}): {m!r}" for i, m in enumerate(self.modules)]
        if self.loss is not None:
            lines.append(f"  loss: {self.loss!r}")
        return "Chain(\n" + "\n".join(lines) + "\n)"


def _zero_tree(chain: Chain) -> None:
    chain.zero_grads()
