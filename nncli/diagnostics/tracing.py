"""`inspect --trace`: one batch forward and backward, module by module, with the notes' equations.

For every module M_i (nested ones too) we show the forward equation u = M_i(z) (F) and its backward
function B[M_i, z](v) (eq. 7.57), then what actually flowed through it: the shapes and norms of the
input z = u[i-1], the output u = u[i], the upstream gradient v = ∂J/∂u, the returned ∂J/∂z and every
∂J/∂θ. For σ we add the share of dead ReLU units and of saturated sigmoid / tanh units.

Each layer's class gives its equations (``Module.trace_equations``) and activity shares
(``Module.activity``); this file knows no layer type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from nncli.core.hooks import watch


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


#: the name of the loss module's row (the notes' last module M_k, where backprop starts)
LOSS_ROW = "loss"


def run_trace(
    chain, x: np.ndarray, y: np.ndarray | None, order: str = "forward"
) -> tuple[list[TraceRow], float | None]:
    """Forward and backward one batch through a float64 ``chain``; one TraceRow per module, then
    the loss's row (z = h, u = J, ∂J/∂z = ∂J/∂h), and J. ``order="backward"`` lists the rows as
    §7.4.2 computes them: the loss first, then the modules from the last to the first.

    Without a loss (or targets) the backward pass starts from v = ∂J/∂h = 1, i.e. J = Σ h.
    """
    if order not in ("forward", "backward"):
        raise ValueError(f"order must be 'forward' or 'backward', got {order!r}")
    rows: dict[str, TraceRow] = {}
    names = []
    for name, m in chain.named_modules():
        fwd, bwd = m.trace_equations()
        rows[name] = TraceRow(name, name.count(".") // 2, m.label(), fwd, bwd)
        names.append(name)

    def on_forward(n, m, z, u, _t):
        rows[n].z, rows[n].u, rows[n].activity = _stat(z), _stat(u), m.activity(z, u)

    def on_backward(n, m, v, dz, _t):
        rows[n].v, rows[n].dz = _stat(v), _stat(dz)

    chain.zero_grads()
    with watch(chain, on_forward, on_backward):
        h = chain.forward(x)
        if chain.loss is not None and y is not None:
            J = chain.loss.forward(h, y)
            dh = chain.loss.backward()
            loss = TraceRow(LOSS_ROW, 0, chain.loss.label(), *chain.loss.trace_equations())
        else:
            J = None
            dh = np.ones_like(h)
            loss = TraceRow(LOSS_ROW, 0, "Σ h", "J = Σ h  (no loss or targets)", "∂J/∂h = 1")
        chain.backward(dh)
    loss.z, loss.dz = _stat(h), _stat(dh)
    loss.u = {"shape": [], "norm": abs(float(J if J is not None else np.sum(h)))}
    for name, m in chain.named_modules():
        rows[name].grads = {k: _stat(g) for k, g in m.grads.items()}
    ordered = [rows[n] for n in names] + [loss]
    return (ordered if order == "forward" else ordered[::-1]), J
