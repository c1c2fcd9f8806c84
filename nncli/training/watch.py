"""Watching backprop over training (``train.watch: {every: N}``): one record every N steps.

A ``Watcher`` is a trainer callback. Before a watched step (steps 1, N, 2N, …) it copies the
parameters θ and hooks every module (``nncli.core.hooks.watch``); during the step's own forward and
backward pass the hooks measure what flows through each module M_i, u = M_i(z) (notes §7.4.2); after
the optimiser's update it unhooks and hands ``sink`` one record::

    {"step": t, "epoch": e, "lr": η, "batch": N, "grad_norm": ‖∂J/∂θ‖ over all parameters,
     "modules": [{"name": "0", "type": "MM",
                  "u": ‖u‖,                 the module's output on the batch (Frobenius norm)
                  "v": ‖∂J/∂u‖,             the gradient reaching the OUTPUT u (the notes' v)
                  "params": {"weight": {"norm": ‖θ‖, "grad": ‖∂J/∂θ‖, "update": ‖Δθ‖/‖θ‖}},
                  "activity": {"dead_units": …, "saturated": …},     σ only
                  "stats": {"input_mean": …, "input_std": …, …}},    normalisations only
                 ...]}

All norms are over the whole batch of N examples, so they depend on N (the last batch of an epoch
may be smaller): ‖u‖/√N is the root mean square of the examples' ‖u_n‖ and, J being the batch mean
of the losses ℓ_n, √N·‖v‖ that of their ‖∂ℓ_n/∂u_n‖; ``nncli plot --watch`` draws these.
Δθ = θ_t − θ_{t−1} is the update the optimiser made at step t and ‖θ‖ the norm before it; a
parameter with ‖θ‖ = 0 has no ratio (null). Each module's ∂J/∂z is the next one's v, so it is not
recorded twice; training runs no backward through the modules before the first one with parameters
(``Chain.backward_params``), whose v is null.

Activity (``Module.activity``): the share of dead ReLU units, whose input is ≤ 0 for every example
of the batch, so their gradient is 0; the share of saturated sigmoid outputs (σ < 0.01 or > 0.99,
where σ' < 0.0099, under 1/25 of its peak 1/4) or tanh outputs (|tanh| > 0.99, tanh' < 0.02).
Statistics (``Module.statistics``): for LN, BatchNorm and GroupNorm the means, over the sets they
normalise, of μ̂ and σ̂ (the biased standard deviation, without ε) of their input; for BatchNorm also
the channel means of ``running_mean`` and ``running_var`` after the step's update.

Unwatched steps pay a few attribute tests; no hook is registered between watched steps, so the
chains take their plain path (``nncli.core.hooks``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import numpy as np

from nncli.core.hooks import watch

Record = dict[str, Any]


def watched(step: int, every: int) -> bool:
    """Whether step ``step`` (1-based) is recorded: the first step, then every ``every``-th."""
    return step == 1 or step % every == 0


def _norm(a: np.ndarray | None) -> float | None:
    """‖a‖ (Frobenius), summed in float64; √(x·x) directly, as np.linalg.norm does for a vector."""
    if a is None:
        return None
    x = np.asarray(a).reshape(-1)
    if x.dtype != np.float64:
        x = x.astype(np.float64)
    return math.sqrt(float(x @ x))


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0 or not math.isfinite(den):
        return None
    return num / den


class Watcher:
    """Trainer callback recording every ``every`` steps; ``sink(record)`` gets each record."""

    def __init__(self, every: int, sink: Callable[[Record], None]):
        if every < 1:
            raise ValueError(f"every must be ≥ 1, got {every}")
        self.every, self.sink = every, sink
        self._hooks: ExitStack | None = None
        self._rows: dict[str, Record] = {}
        self._before: dict[str, np.ndarray] = {}
        self._batch = 0

    # -- trainer events ------------------------------------------------------------------------------
    def on_step_begin(self, trainer) -> None:
        self._unhook()  # an earlier step ended in an exception: start clean
        if not watched(trainer.state.step + 1, self.every):
            return
        chain = trainer.chain
        self._before = {key: p.copy() for key, p, _ in chain.parameters()}
        self._rows = {
            name: {"name": name, "type": m.label(), "u": None, "v": None} for name, m in chain.named_modules()
        }
        self._hooks = ExitStack()
        self._hooks.enter_context(watch(chain, self._on_forward, self._on_backward))

    def on_step(self, trainer) -> None:
        if self._hooks is None:
            return
        self._unhook()
        self.sink(self._record(trainer))

    def on_end(self, trainer, result) -> None:
        self._unhook()  # a diverged step never reaches on_step

    def on_error(self, trainer, exc) -> None:
        self._unhook()  # hooks left on the modules would watch (and slow) whatever runs them next

    # -- what the hooks see --------------------------------------------------------------------------
    def _on_forward(self, name: str, m, z, u, _seconds) -> None:
        if not m.training:  # only the step's own forward
            return
        self._batch = len(z)
        row = self._rows[name]
        row["u"] = _norm(u)
        activity = m.activity(z, u)
        if activity:
            row["activity"] = activity
        stats = m.statistics(z)
        if stats:
            row["stats"] = stats

    def _on_backward(self, name: str, m, v, _dz, _seconds) -> None:
        self._rows[name]["v"] = _norm(v)

    # -- the record ----------------------------------------------------------------------------------
    def _record(self, trainer) -> Record:
        chain = trainer.chain
        total = 0.0
        for name, m in chain.named_modules():
            params = {}
            for key, p in m.params.items():
                full = f"{name}.{key}"
                g = _norm(m.grads[key])
                before = self._before.get(full)
                norm0 = _norm(before)
                step = _norm(p - before) if before is not None else None
                params[key] = {"norm": norm0, "grad": g, "update": _ratio(step, norm0)}
                total += (g or 0.0) ** 2
            if params:
                self._rows[name]["params"] = params
        st = trainer.state
        rec = {
            "step": st.step,
            "epoch": trainer.epoch,
            "lr": trainer.lr,
            "batch": self._batch,
            "grad_norm": math.sqrt(total),
            "modules": list(self._rows.values()),
        }
        self._rows, self._before = {}, {}
        return rec

    def _unhook(self) -> None:
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            hooks.close()
