"""The module protocol: the notes' building blocks M_i with their backward functions B[g, z].

A module is built in two steps, as in Keras: hyper-parameters are validated in ``__init__`` (a pydantic
model ``Config`` per module type), and parameters are created by ``build(input_shape, rng, dtype)`` once
the per-example input shape is known. Then

    forward(z)  -> u       keeps only what backward needs (notes' u[i] = M_i(u[i-1]), (F))
    backward(v) -> dJ/dz   v = dJ/du; ADDS dJ/dθ into ``grads`` (never assigns); never mutates v  (7.57)

Shapes are batch-first: ``z`` has shape ``(N, *input_shape)``.

Modules nest (the composite pattern): ``children()`` names a module's sub-modules (a Chain's layers,
a Residual's body), and parameters, gradients, training mode and ``named_modules`` walk the tree.
Hooks (``nncli.core.hooks``) let tracing, timing and the divergence check watch any module.

Everything else a layer knows also lives on its class, so inspect, trace and export ask the class and
know no layer type: ``describe()`` and ``label()`` (inspect's row), ``trace_equations()`` and
``activity()`` (``inspect --trace``), ``torch_spec()`` (``to_torch()`` for the cross-checks and
``torch_source()`` for the exported PyTorch file), ``to_onnx()`` (the ONNX subgraph) and
``examples()`` (the registry-wide gradcheck and PyTorch tests). Each has a default, so a new layer
file runs before it says all of that; a layer without an export is refused by name.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from nncli.core import hooks
from nncli.core.errors import ShapeError
from nncli.core.flat import FlatParameters
from nncli.core.registry import modules
from nncli.core.torch_spec import SourceWriter, TorchSpec, load_params

#: what ``inspect --trace`` shows for a layer that does not give its own equations
GENERIC_EQUATIONS = ("u = M(z)", "∂J/∂z = B[M, z](v)  (7.57)")

_hook_ids = itertools.count()


class NoParams(BaseModel):
    """Hyper-parameters of a module that has none."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class HParams(BaseModel):
    """Base of every module's hyper-parameter schema: unknown keys and NaN/Inf numbers are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class Module(ABC):
    """Base class. Subclasses set ``Config`` and implement the shape, forward and backward methods."""

    #: the name used in inspect tables (the notes' name where there is one)
    notes_name: ClassVar[str] = ""
    #: pydantic schema of the hyper-parameters
    Config: ClassVar[type[BaseModel]] = NoParams
    #: a pure container (Chain) is a path in ``named_modules``, not an entry: its modules are listed
    container: ClassVar[bool] = False
    # registered hooks by key; these class-level empties are never written (registering makes the
    # instance its own dict), so a module nobody watches carries none
    _forward_hooks: dict[int, hooks.Hook] = {}
    _backward_hooks: dict[int, hooks.Hook] = {}
    #: the flat layout of this tree's parameters once ``flatten_parameters`` made one (else None)
    flat: FlatParameters | None = None
    #: how the module takes a batch cut into parts that run apart (``nncli.core.batch_split``):
    #: "no" where one example's output or gradient depends on the others' (batch statistics) or on
    #: the order of random draws, and for any module that does not say; "yes" where each example
    #: is computed on its own; "gains" as "yes", and the split pays (layers whose kernels thread
    #: over blocks of examples less well than whole halves of the batch do: convolution, pooling)
    batch_split: ClassVar[str] = "no"
    #: True from ``zero_grads`` until the module's next backward: its gradients are known to be zero,
    #: so a backward may write ∂J/∂θ instead of adding it (MM: a pass less over ∂J/∂W, as PyTorch
    #: writes a gradient it has set to None). Whatever else writes into ``grads`` must clear it.
    grads_zeroed: bool = False

    def __init__(self, **hparams: Any):
        self.cfg = self.Config(**hparams)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        #: non-trainable state saved with the weights (BatchNorm's running statistics), as torch's
        #: buffers: in ``state_dict`` and checkpoints, never given to an optimiser
        self.buffers: dict[str, np.ndarray] = {}
        self.input_shape: tuple[int, ...] | None = None
        self.dtype = np.dtype(np.float64)
        self.training = True

    # -- shape and parameters -------------------------------------------------------------
    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-example output shape for a per-example ``input_shape`` (raise ShapeError if unfit)."""
        return tuple(input_shape)

    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float64) -> Module:
        """Check the input shape, create parameters (PyTorch's default init) and zeroed gradients."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = np.dtype(dtype)
        self.flat = None  # fresh arrays below: any earlier flat layout no longer holds them
        self.output_shape(self.input_shape)  # raises ShapeError on a shape that does not fit
        self.params = {k: np.asarray(v, dtype=self.dtype) for k, v in self.init_params(rng).items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {
            k: np.asarray(v, dtype=self.dtype if np.issubdtype(np.asarray(v).dtype, np.floating) else None)
            for k, v in self.init_buffers().items()
        }
        return self

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Fresh parameters for ``self.input_shape``; modules without parameters return {}."""
        return {}

    def init_buffers(self) -> dict[str, np.ndarray]:
        """Fresh non-trainable state (running statistics) for ``self.input_shape``: float arrays take
        the module's dtype, integer ones keep theirs (``num_batches_tracked`` is int64 as in torch)."""
        return {}

    @property
    def param_count(self) -> int:
        """Parameters of this module and of its sub-modules."""
        return int(sum(p.size for _, p, _ in self.parameters()))

    def flatten_parameters(self) -> FlatParameters:
        """Move the parameters and gradients of this module and all below it into one buffer per
        dtype each (``nncli.core.flat``); ``params``/``grads`` become views, values are kept.

        Call it on the root of the model (the optimiser's ``make_optimizer`` does): a layout made
        lower down would be split by this one. Idempotent while the layout holds.
        """
        if self.flat is None or not self.flat.intact():
            self.flat = FlatParameters(self)
            for m in _below(self):
                m.flat = None  # a sub-chain's own layout (if any) no longer holds its parameters
        return self.flat

    def __getstate__(self) -> dict[str, Any]:
        # a copy or an unpickled module gets arrays of its own, no longer views of the flat buffers:
        # drop the layout, so that it zeroes its own gradients (flatten it again to train it fast)
        state = self.__dict__.copy()
        state.pop("flat", None)
        return state

    def batch_split_mode(self) -> str:
        """``batch_split`` for this module and everything below it: "no" if any says no, else
        "gains" if any gains, else "yes"."""
        modes = {self.batch_split} | {child.batch_split_mode() for _, child in self.children()}
        return "no" if "no" in modes else "gains" if "gains" in modes else "yes"

    def zero_grads(self) -> None:
        """Zero this module's gradients and those of its children (a Residual's body): one fill per
        dtype once the parameters are flat."""
        if self.flat is not None:
            self.flat.zero_grads()
            return
        for g in self.grads.values():
            g.fill(0)
        self.grads_zeroed = True
        for _, child in self.children():
            child.zero_grads()

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    # -- computation ----------------------------------------------------------------------
    @abstractmethod
    def forward(self, z: np.ndarray) -> np.ndarray:
        """u = M(z) for a batch z (N, *input_shape); keeps only what ``backward`` needs."""

    @abstractmethod
    def backward(self, v: np.ndarray) -> np.ndarray:
        """B[M, z](v) = ∂J/∂z for v = ∂J/∂u (eq. 7.57); adds ∂J/∂θ into ``grads``."""

    def backward_params(self, v: np.ndarray) -> None:
        """Add ∂J/∂θ as ``backward`` does, for a caller that never reads ∂J/∂z (a chain's first
        trainable module). Modules whose input gradient costs real work override it to skip that."""
        self.backward(v)

    def cheaper_pair(self, previous: Module) -> list[Module] | None:
        """What a chain may run instead of ``previous`` (the module declared just before this one)
        followed by this module, for the same values with less work: say, the two in the other
        order, or one module doing both (a ReLU and the pooling after it, ``layers.relu_pool.ReluPool``,
        block by block in cache; max pooling runs first, as max and ReLU commute). None: as
        declared. The chain uses the pair only while no hook is registered, so hooks see the
        declared modules."""
        return None

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``forward`` with this module's forward hooks."""
        if not self._forward_hooks:
            return self.forward(z)
        return hooks.run_hooked(self, self._forward_hooks, self.forward, z)

    def call_backward(self, v: np.ndarray) -> np.ndarray:
        """``backward`` with this module's backward hooks."""
        if not self._backward_hooks:
            return self.backward(v)
        return hooks.run_hooked(self, self._backward_hooks, self.backward, v)

    def call_backward_params(self, v: np.ndarray) -> None:
        """``backward_params`` with this module's backward hooks (they see None for ∂J/∂z)."""
        if not self._backward_hooks:
            self.backward_params(v)
        else:
            hooks.run_hooked(self, self._backward_hooks, self.backward_params, v)

    def register_forward_hook(self, fn: hooks.Hook) -> hooks.HookHandle:
        """Call ``fn(module, z, u, seconds)`` after each forward run by a chain; see nncli.core.hooks."""
        return hooks.HookHandle(self.__dict__.setdefault("_forward_hooks", {}), next(_hook_ids), fn)

    def register_backward_hook(self, fn: hooks.Hook) -> hooks.HookHandle:
        """Call ``fn(module, v, dz, seconds)`` after each backward run by a chain."""
        return hooks.HookHandle(self.__dict__.setdefault("_backward_hooks", {}), next(_hook_ids), fn)

    # -- description (inspect, gradcheck) -------------------------------------------------
    def hparams(self) -> dict[str, Any]:
        """Hyper-parameters that differ from the defaults (like PyTorch's ``extra_repr``)."""
        return self.cfg.model_dump(exclude_defaults=True)

    def describe(self) -> dict[str, Any]:
        """Facts for ``inspect``: the parameter-count formula, multiply-adds and saved activations.

        Keys: ``formula`` (str, e.g. ``"k·C·C' + C' = 5·1·25 + 25 = 150"``), ``macs_forward``,
        ``macs_backward`` (per example), ``saved`` (floats kept for backward, per example).
        """
        return {"formula": "", "macs_forward": 0, "macs_backward": 0, "saved": 0}

    @classmethod
    def examples(cls) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
        """Small (hyper-parameters, per-example input shape) settings that gradcheck and the tests use.

        Every registered module is checked at each of these, so cover the options (stride, padding, …).
        """
        return [({}, (5,))]

    # -- what inspect, trace and export ask of the layer ---------------------------------------
    # Everything a layer knows lives on its class: these hooks have defaults that fit a layer without
    # the fact (generic equations, no export), so a new layer file works before it says more.

    #: parameter keys inspect counts as biases (every other parameter is a weight)
    bias_keys: ClassVar[tuple[str, ...]] = ("bias", "beta")

    def label(self) -> str:
        """The layer's name in inspect, trace and gradcheck tables: the notes' name, else the
        registered one (σ adds its function: ``σ(relu)``)."""
        return self.notes_name or modules.canonical_name(type(self))

    def trace_equations(self) -> tuple[str, str]:
        """(forward equation, backward function) for ``inspect --trace``, written with z the input,
        u the output, v = ∂J/∂u and N the batch, with the notes' equation numbers."""
        return GENERIC_EQUATIONS

    def activity(self, z: np.ndarray, u: np.ndarray) -> dict[str, float]:
        """Shares of units worth flagging in the trace (σ: dead ReLUs, saturated sigmoids); {} here."""
        return {}

    def statistics(self, z: np.ndarray) -> dict[str, float]:
        """Scalars ``train.watch`` records beside the norms, from the input z of a training forward
        (a normalisation: the mean and standard deviation it computes, its running averages); {} here."""
        return {}

    def torch_spec(self) -> TorchSpec | None:
        """The equivalent ``torch.nn`` layer as a ``TorchSpec`` (class and constructor arguments), or
        None when there is none. ``to_torch`` and ``torch_source`` are derived from it."""
        return None

    def to_torch(self):
        """The equivalent ``torch.nn.Module`` holding copies of this module's parameters, in its dtype.

        Used by the cross-checks; torch is imported only here, never by the core.
        """
        spec = self.torch_spec()
        if spec is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no PyTorch equivalent (torch_spec() is None)"
            )
        return load_params(spec.build(), {**self.params, **self.buffers}, self.dtype)

    def torch_source(self, writer: SourceWriter) -> str | None:
        """The expression that constructs this layer in an exported PyTorch file (``nn.Linear(4, 3,
        bias=True)``), or None when it cannot be exported. ``writer`` takes helper classes and
        writes nested ``nn.Sequential``s. Parameter names must match ``params``' (state-dict keys)."""
        spec = self.torch_spec()
        return None if spec is None else spec.source(writer)

    def to_onnx(self, graph, x: str, name: str) -> str | None:
        """Add this layer's ONNX nodes to ``graph`` and return the name of its output, or None when it
        cannot be exported.

        ``x`` names the input tensor (N, *input_shape), ``name`` is the state-dict prefix (``3``,
        ``3.body.0``) for initializers. ``graph`` is the exporter's builder
        (``nncli.export.onnx_export.GraphBuilder``): ``graph.node(op, inputs, name, **attrs)`` → output
        name, ``graph.const(key, array)`` and ``graph.scalar(name, tag, value)`` → initializer name,
        ``graph.subgraph(modules, x, prefix)`` for nested chains. The core never imports onnx.
        """
        return None

    # -- the tree of modules ----------------------------------------------------------------
    def children(self) -> list[tuple[str, Module]]:
        """Named sub-modules (a Residual's body, a Chain's layers); leaf modules have none."""
        return []

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(PyTorch-style dotted name, module) for every sub-module, depth first, parents first.
        A Chain below this module is not listed itself: its modules are, under its name."""
        for name, child in self.children():
            path = f"{prefix}{name}"
            if not child.container:
                yield path, child
            yield from child.named_modules(f"{path}.")

    def parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(state_dict key, parameter, gradient) of this module and every sub-module, e.g.
        ("weight", W, ∂J/∂W) for a layer, ("body.0.weight", …) for a Residual, ("3.bias", …) for a Chain."""
        for key, p in self.params.items():
            yield key, p, self.grads[key]
        for name, m in self.named_modules():
            for key, p in m.params.items():
                yield f"{name}.{key}", p, m.grads[key]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        """(state_dict key, buffer) of this module and every sub-module, as ``parameters`` names them."""
        yield from self.buffers.items()
        for name, m in self.named_modules():
            for key, b in m.buffers.items():
                yield f"{name}.{key}", b

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The live parameters and buffers by state-dict key (what a checkpoint saves and restores)."""
        return {**{k: p for k, p, _ in self.parameters()}, **dict(self.named_buffers())}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters and buffers, named and shaped like the torch equivalent's
        ``state_dict()``."""
        return {k: p.copy() for k, p in self.state_arrays().items()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy ``state`` into the parameters and buffers in place; with ``strict`` keys and shapes
        must match."""
        own = self.state_arrays()
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
        extra = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({extra})"


def _below(module: Module) -> Iterator[Module]:
    """Every module under ``module``, containers (nested chains) included."""
    for _, child in module.children():
        yield child
        yield from _below(child)


def require_rank(module: Module, input_shape: tuple[int, ...], rank: int, layout: str) -> None:
    """Raise a ShapeError unless the per-example input has ``rank`` axes (``layout`` names them)."""
    if len(input_shape) != rank:
        hint = ""
        if rank > 1 and len(input_shape) == 1:
            hint = "; add a Reshape layer before it"
        elif rank == 1 and len(input_shape) > 1:
            hint = "; add a Flatten layer before it"
        raise ShapeError(
            f"{type(module).__name__} expects inputs of shape {layout} per example, "
            f"got {tuple(input_shape)}{hint}"
        )
