"""`inspect --trace`: one batch forward and backward, module by module, with the notes' equations.

For every module M_i (nested ones too) we show the forward equation u = M_i(z) (F) and its backward
function B[M_i, z](v) (eq. 7.57), then what actually flowed through it: the shapes and norms of the
input z = u[i-1], the output u = u[i], the upstream gradient v = ∂J/∂u, the returned ∂J/∂z and every
∂J/∂θ. For σ we add the share of dead ReLU units and of saturated sigmoid / tanh units.

The equations live here, in one lookup keyed by module class, so modules stay lean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from nncli.core.errors import UserError
from nncli.core.hooks import watch
from nncli.core.registry import modules as module_registry

# -- the equations, per module type ------------------------------------------------------------
# (forward, backward); written with z the input, u the output, v = ∂J/∂u, N the batch.
_BY_NAME: dict[str, tuple[str, str]] = {
    "MM": ("u = W z + b  (7.36)", "∂J/∂W = vᵀz, ∂J/∂b = Σₙ vₙ, ∂J/∂z = v W  (§7.4.3)"),
    "Conv1D": (
        "u_i = Σ_j Conv1D-S_ij(z_j) + b_i = Σ_j Q_ij z_j + b_i  (7.48–7.50)",
        "∂J/∂w_ij = Σₙ v_i ⋆ z_j, ∂J/∂b_i = Σ v_i, ∂J/∂z_j = Σ_i Q_ijᵀ v_i",
    ),
    "Conv2D": (
        "u_i = Σ_j Conv2D-S_ij(z_j) + b_i  (7.51)",
        "∂J/∂w_ij = Σₙ v_i ⋆ z_j, ∂J/∂b_i = Σ v_i, ∂J/∂z_j = Σ_i Q_ijᵀ v_i",
    ),
    "LN": (
        "u = β + γ (z − μ̂)/σ̂  (7.42–7.43)",
        "∂J/∂z = (γ/σ̂)(v − mean v − ẑ·mean(v⊙ẑ)), ẑ = (z − μ̂)/σ̂; ∂J/∂γ = Σ v⊙ẑ, ∂J/∂β = Σ v",
    ),
    "Flatten": ("u = reshape(z, (N, ∏ shape))", "∂J/∂z = reshape(v, z.shape)"),
    "Reshape": ("u = reshape(z, (N, *shape))", "∂J/∂z = reshape(v, z.shape)"),
    "Dropout": ("u = m ⊙ z / (1 − p), m ~ Bernoulli(1 − p)  (training)", "∂J/∂z = m ⊙ v / (1 − p)"),
    "Residual": ("u = z + body(z)", "∂J/∂z = v + B[body, z](v)"),
    "MaxPool1D": ("u = max of each window of z", "∂J/∂z = v routed to each window's argmax"),
    "MaxPool2D": ("u = max of each window of z", "∂J/∂z = v routed to each window's argmax"),
    "AvgPool1D": ("u = mean of each window of z", "∂J/∂z = v spread evenly over each window"),
    "AvgPool2D": ("u = mean of each window of z", "∂J/∂z = v spread evenly over each window"),
}

_SIGMA: dict[str, tuple[str, str]] = {
    "relu": ("u = max(z, 0)", "∂J/∂z = 1[z > 0] ⊙ v  (7.59)"),
    "leaky_relu": ("u = max(z, αz)", "∂J/∂z = (1[z > 0] + α·1[z ≤ 0]) ⊙ v  (7.59)"),
    "sigmoid": ("u = 1 / (1 + e^(−z))", "∂J/∂z = u ⊙ (1 − u) ⊙ v  (7.59)"),
    "tanh": ("u = tanh z", "∂J/∂z = (1 − u²) ⊙ v  (7.59)"),
    "gelu": ("u = z Φ(z)", "∂J/∂z = (Φ(z) + z φ(z)) ⊙ v  (7.59)"),
    "softplus": ("u = log(1 + e^(βz)) / β", "∂J/∂z = sigmoid(βz) ⊙ v  (7.59)"),
    "identity": ("u = z", "∂J/∂z = v"),
}

_GENERIC = ("u = M(z)", "∂J/∂z = B[M, z](v)  (7.57)")


def trace_equations() -> dict[type, Callable[[object], tuple[str, str]]]:
    """Module class → function(module) → (forward equation, backward function).

    Built from the registry, so a type that is not installed is simply absent.
    """
    table: dict[type, Callable] = {}
    for name, eqs in _BY_NAME.items():
        try:
            entry = module_registry.lookup(name)
        except UserError:
            continue
        table.setdefault(getattr(entry, "cls", entry), lambda m, e=eqs: e)
    sigma = getattr(module_registry.lookup("sigma"), "cls", module_registry.lookup("sigma"))
    table[sigma] = lambda m: _SIGMA.get(m.cfg.fn, _GENERIC)
    return table


def equations_for(module) -> tuple[str, str]:
    fn = trace_equations().get(type(module))
    return fn(module) if fn else _GENERIC


# -- watching a chain: forward/backward hooks on every module (nncli.core.hooks.watch) -----------
def record_inputs(chain, x: np.ndarray) -> dict[str, np.ndarray]:
    """One forward pass; the input each module saw, by dotted name (copies)."""
    seen: dict[str, np.ndarray] = {}
    with watch(chain, on_forward=lambda n, m, z, u, t: seen.setdefault(n, np.array(z, copy=True))):
        chain.forward(x)
    return seen


# -- the trace itself ----------------------------------------------------------------------------
@dataclass
class TraceRow:
    name: str
    depth: int
    type: str
    forward_eq: str
    backward_eq: str
    z: dict = field(default_factory=dict)  # {"shape": [...], "norm": float}
    u: dict = field(default_factory=dict)
    v: dict = field(default_factory=dict)  # ∂J/∂u
    dz: dict = field(default_factory=dict)  # ∂J/∂z
    grads: dict = field(default_factory=dict)  # key → {"shape", "norm"}
    activity: dict = field(default_factory=dict)  # dead / saturated shares for σ

    def to_dict(self) -> dict:
        return asdict(self)


def _stat(a: np.ndarray) -> dict:
    return {"shape": list(a.shape), "norm": float(np.linalg.norm(a.reshape(-1)))}


def activity(module, z: np.ndarray, u: np.ndarray) -> dict:
    """Share of dead ReLU units (never positive over the batch) or saturated sigmoid / tanh entries."""
    fn = getattr(getattr(module, "cfg", None), "fn", None)
    if fn in ("relu", "leaky_relu"):
        off = z <= 0
        return {"dead_units": float(np.mean(np.all(off, axis=0))), "inactive": float(np.mean(off))}
    if fn == "sigmoid":
        return {"saturated": float(np.mean((u < 0.01) | (u > 0.99)))}
    if fn == "tanh":
        return {"saturated": float(np.mean(np.abs(u) > 0.99))}
    return {}


def type_label(module) -> str:
    """The notes' name, with σ's function: MM, σ(relu), LN, Conv1D …"""
    from nncli.core.registry import modules

    label = getattr(module, "notes_name", "") or modules.canonical_name(type(module))
    fn = getattr(getattr(module, "cfg", None), "fn", None)
    return f"{label}({fn})" if isinstance(fn, str) else label


def run_trace(chain, x: np.ndarray, y: np.ndarray | None) -> tuple[list[TraceRow], float | None]:
    """Forward and backward one batch through a float64 ``chain``; one TraceRow per module, and J.

    Without a loss (or targets) the backward pass starts from v = ∂J/∂h = 1, i.e. J = Σ h.
    """
    rows: dict[str, TraceRow] = {}
    order = []
    for name, m in chain.named_modules():
        fwd, bwd = equations_for(m)
        rows[name] = TraceRow(name, name.count(".") // 2, type_label(m), fwd, bwd)
        order.append(name)

    def on_forward(n, m, z, u, _t):
        rows[n].z, rows[n].u, rows[n].activity = _stat(z), _stat(u), activity(m, z, u)

    def on_backward(n, m, v, dz, _t):
        rows[n].v, rows[n].dz = _stat(v), _stat(dz)

    chain.zero_grads()
    with watch(chain, on_forward, on_backward):
        h = chain.forward(x)
        if chain.loss is not None and y is not None:
            J = chain.loss.forward(h, y)
            chain.backward(chain.loss.backward())
        else:
            J = None
            chain.backward(np.ones_like(h))
    for name, m in chain.named_modules():
        rows[name].grads = {k: _stat(g) for k, g in m.grads.items()}
    return [rows[n] for n in order], J
