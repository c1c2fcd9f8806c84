"""The chain of modules and its loss: forward pass (F) and backward pass (notes §7.4.2).

Forward computes u[1..k] in order, each module keeping what its backward needs; the backward pass
walks the modules in reverse, turning ∂J/∂u[i] into ∂J/∂u[i-1] and adding each module's ∂J/∂θ[i].
A Chain is itself a Module (the composite pattern): a Residual's body is one, and chains nest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nncli.core import hooks
from nncli.core.batch_split import SplitState
from nncli.core.batch_split import for_step as split_for_step
from nncli.core.module import Module

if TYPE_CHECKING:
    from nncli.core.losses import Loss


class Chain(Module):
    """``modules`` applied in order to batches of shape (N, *input_shape); ``loss`` may be None.

    Parameter names are the torch ``nn.Sequential``'s (``0.weight``, ``3.body.0.bias``).
    """

    container = True
    batch_split = "yes"
    #: the split-batch step's state (``nncli.core.batch_split``), made at the first training step
    split_state: SplitState | None = None
    #: the modules as they run without hooks, from ``build`` (``cheaper_plan``); None: as declared
    run_plan: list[Module] | None = None
    _planned_for: tuple[int, ...] = ()  # ids of the modules ``run_plan`` was made for
    _ran: list[Module] | None = None  # the last forward's modules in their order, for its backward

    def __init__(
        self, modules: list[Module], loss: Loss | None = None, input_shape: tuple[int, ...] | None = None
    ):
        super().__init__()
        self.modules = list(modules)
        self.loss = loss
        self.input_shape = tuple(input_shape) if input_shape is not None else None

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), m) for i, m in enumerate(self.modules)]

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("split_state", None)  # a copy makes its own split-batch copy when it needs one
        state.pop("_ran", None)  # the last forward's order, which only its own backward reads
        return state

    # -- building ---------------------------------------------------------------------------
    def build(self, input_shape, rng: np.random.Generator, dtype=np.float64) -> Chain:
        """Build every module in turn, feeding each the output shape of the one before."""
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.flat = None  # the modules get fresh arrays
        self.split_state = None  # and a split batch's copy of them (``batch_split``) is made anew
        shape = self.input_shape
        for m in self.modules:
            m.build(shape, rng, dtype)
            shape = m.output_shape(shape)
        if self.loss is not None:
            self.loss.check_output(shape)
        self._plan()
        return self

    def _plan(self) -> list[Module] | None:
        """Make ``run_plan`` for the modules as they are now, and remember which modules those were."""
        self.run_plan = cheaper_plan(self.modules)
        self._planned_for = tuple(map(id, self.modules))
        return self.run_plan

    def output_shape(self, input_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Per-example output shape for ``input_shape`` (default: the shape the chain was built for)."""
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        if shape is None:
            raise ValueError("the chain is not built yet: give an input shape")
        for m in self.modules:
            shape = m.output_shape(shape)
        return shape

    @property
    def dtype(self):
        return self.modules[0].dtype if self.modules else self._dtype

    @dtype.setter
    def dtype(self, value) -> None:
        self._dtype = np.dtype(value)

    # -- computation --------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """u[0] = x, u[i] = M_i(u[i-1]); returns u[k-1], the model output h (N, *output_shape)."""
        u = np.asarray(x, dtype=self.dtype)
        if hooks.any_registered():
            self._ran = self.modules  # hooks see every module's own input and output
            for m in self.modules:
                u = m(u)
        else:
            plan = self.run_plan
            if plan is not None and self._planned_for != tuple(map(id, self.modules)):
                plan = self._plan()  # a module was replaced, added or removed since ``build``
            self._ran = self.modules if plan is None else plan
            for m in self._ran:
                u = m.forward(u)
        return u

    def _ran_last(self) -> list[Module]:
        """The modules in the order the last forward ran them: backward walks them in reverse."""
        return self.modules if self._ran is None else self._ran

    def backward(self, v: np.ndarray) -> np.ndarray:
        """Given v = ∂J/∂h, accumulate every ∂J/∂θ[i] and return ∂J/∂x."""
        hooked = hooks.any_registered()
        for m in reversed(self._ran_last()):
            v = m.call_backward(v) if hooked else m.backward(v)
        return v

    def backward_params(self, v: np.ndarray) -> None:
        """Accumulate every ∂J/∂θ[i] when ∂J/∂x is not wanted (training never reads it).

        The pass stops at the first module that has parameters and asks it for ∂J/∂θ only
        (``backward_params``): for an MLP that skips its largest product, v W with W (hidden,
        input), as PyTorch does for inputs without ``requires_grad``.
        """
        ran = self._ran_last()
        stop = first_trainable(ran)
        if stop is None:  # nothing to train: no backward work at all
            return
        hooked = hooks.any_registered()
        for m in reversed(ran[stop + 1 :]):
            v = m.call_backward(v) if hooked else m.backward(v)
        first = ran[stop]
        first.call_backward_params(v) if hooked else first.backward_params(v)

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Zero the gradients, run forward, the loss and backward; return (J, model output h).

        Large CNN steps run as two halves of the batch on two threads (``nncli.core.batch_split``)."""
        if self.loss is None:
            raise ValueError("loss_and_grad needs a chain with a loss")
        split = split_for_step(self, len(x))
        if split is not None:
            return split.loss_and_grad(x, y)
        self.zero_grads()
        h = self.forward(x)
        J = self.loss.forward(h, y)
        self.backward_params(self.loss.backward())
        return J, h

    # -- description ----------------------------------------------------------------------------
    def describe(self):
        facts = [m.describe() for m in self.modules]
        return {
            "formula": " + ".join(str(m.param_count) for m in self.modules) + f" = {self.param_count}",
            **{k: sum(f[k] for f in facts) for k in ("macs_forward", "macs_backward", "saved")},
        }

    def to_torch(self):
        import torch

        return torch.nn.Sequential(*[m.to_torch() for m in self.modules])

    def torch_source(self, writer):
        """``nn.Sequential(...)`` with each module's own expression (see ``Module.torch_source``)."""
        return writer.sequential(self.modules)

    def to_onnx(self, graph, x, name):
        """Each module's nodes in turn, named ``<name>.<i>`` as the state-dict keys."""
        return graph.subgraph(self.modules, x, prefix=f"{name}." if name else "")

    def __repr__(self) -> str:
        lines = [f"  ({i}): {m!r}" for i, m in enumerate(self.modules)]
        if self.loss is not None:
            lines.append(f"  loss: {self.loss!r}")
        return "Chain(\n" + "\n".join(lines) + "\n)"


def first_trainable(modules: list[Module]) -> int | None:
    """Index of the first module with parameters (its own or its sub-modules'), or None."""
    for i, m in enumerate(modules):
        # the first non-empty parameter ends the search (param_count would add up all of them,
        # every step: 2 µs of a small MLP's 45)
        if any(p.size for _, p, _ in m.parameters()):
            return i
    return None


def cheaper_plan(modules: list[Module]) -> list[Module] | None:
    """The modules with each neighbouring pair replaced by its ``cheaper_pair`` where it has one (a
    ReLU and the pooling after it as one module), or None when no pair changes. Pairs do not
    overlap: after a replaced pair (i, i + 1) the next pair looked at is (i + 2, i + 3)."""
    plan: list[Module] = []
    i, changed = 0, False
    while i < len(modules):
        pair = modules[i + 1].cheaper_pair(modules[i]) if i + 1 < len(modules) else None
        if pair is None:
            plan.append(modules[i])
            i += 1
        else:
            plan += pair
            changed, i = True, i + 2
    return plan if changed else None
