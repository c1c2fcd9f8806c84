"""Central-difference checks of backward functions, shared by ``nncli gradcheck`` and the tests.

For a module g and input z we pick a fixed random G shaped like u = g(z) and check the scalar
J = Σ u ⊙ G: its analytic gradients are B[g, z](G) and the ∂J/∂θ the module accumulates (eq. 7.57),
its numeric ones (J(t + ε) − J(t − ε)) / 2ε coordinate by coordinate.

A coordinate where the one-sided differences disagree sits at a non-differentiable point (ReLU at 0,
a tie in max pooling): it is skipped and counted, never silently passed.

Rounding sets a floor under what a central difference can resolve: J itself is computed with a relative
error of about u (the float64 unit roundoff), so (J(t + ε) − J(t − ε)) / 2ε carries an error of about
u·|J|/ε. For |J| ≈ 1 and ε = 1e-6 that is ~2e-10, far under atol; for a loss of 100 it reaches the
atol of 1e-8 and a correct gradient would fail. So the tolerance is atol + rtol·|g| + ROUNDING·u·|J|/ε.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np


@dataclass
class TensorCheck:
    """The outcome for one tensor (the input, or one parameter) of one module."""

    module: str
    tensor: str
    shape: tuple
    checked: int = 0
    skipped: int = 0  # coordinates at non-differentiable points
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst_index: tuple = ()
    analytic: float = 0.0
    numeric: float = 0.0
    passed: bool = True
    notes: list[str] = field(default_factory=list)
    setting: str = ""  # which example setting or chain position was checked (for reports)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"], d["worst_index"] = list(self.shape), list(self.worst_index)
        return d


#: ``samples="auto"``: every coordinate of tensors up to AUTO_ALL elements, else AUTO_SAMPLES of them
AUTO_ALL, AUTO_SAMPLES = 2000, 200


def _coordinates(size: int, samples: int | str | None, rng: np.random.Generator) -> np.ndarray:
    n = (None if size <= AUTO_ALL else AUTO_SAMPLES) if samples == "auto" else samples
    if isinstance(n, str):
        raise ValueError(f"samples: expected a number of coordinates or 'auto', got {n!r}")
    if n is None or n >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=n, replace=False))


#: the rounding floor's safety factor: J's error grows with the number of terms summed into it
ROUNDING = 8

#: the central difference needs x ± ε to differ from x and (f(x+ε) − f(x−ε)) / 2ε to stay finite
MAX_EPS = 1.0


def check_options(eps: float, rtol: float, atol: float) -> None:
    """UserError (exit 2) unless 0 < eps ≤ MAX_EPS and rtol, atol are finite and ≥ 0: a NaN
    tolerance would make every comparison pass, and eps = 0 divides by zero."""
    from nncli.core.errors import Place, UserError

    where = Place("<command line>")
    for name, value in (("--eps", eps), ("--rtol", rtol), ("--atol", atol)):
        if not math.isfinite(value):
            raise UserError(f"expected a finite number, got {value}", field=name, place=where)
    if not 0 < eps <= MAX_EPS:
        raise UserError(
            f"the central-difference step must lie in (0, {MAX_EPS:g}], got {eps:g}; e.g. --eps 1e-6",
            field="--eps",
            place=where,
        )
    for name, value in (("--rtol", rtol), ("--atol", atol)):
        if value < 0:
            raise UserError(f"a tolerance must be ≥ 0, got {value:g}", field=name, place=where)


def compare(
    name: str,
    tensor: str,
    target: np.ndarray,
    analytic: np.ndarray,
    objective: Callable[[], float],
    *,
    eps: float,
    rtol: float,
    atol: float,
    samples: int | str | None,
    rng: np.random.Generator,
) -> TensorCheck:
    """Perturb ``target`` in place coordinate by coordinate (restoring it) and compare with ``analytic``.

    ``samples``: None checks every coordinate, an int that many random ones, "auto" all of a small
    tensor (≤ AUTO_ALL elements) and AUTO_SAMPLES of a larger one.
    """
    rep = TensorCheck(name, tensor, tuple(target.shape))
    flat = target.reshape(-1)  # a view: perturbing it perturbs the tensor
    if not np.shares_memory(flat, target):
        raise ValueError("gradcheck needs a contiguous tensor to perturb")
    worst_score = -1.0
    f_mid = objective()  # the unperturbed value: every coordinate is restored, so compute it once
    widest_floor = 0.0
    for i in _coordinates(flat.size, samples, rng):
        old = flat[i]
        flat[i] = old + eps
        f_plus = objective()
        flat[i] = old - eps
        f_minus = objective()
        flat[i] = old
        numeric = (f_plus - f_minus) / (2 * eps)
        a = float(analytic.reshape(-1)[i])
        right, left = (f_plus - f_mid) / eps, (f_mid - f_minus) / eps
        # one-sided slopes that disagree by more than the tolerance mean a kink inside [−ε, ε]
        if abs(right - left) > 10 * (atol + rtol * max(abs(right), abs(left))) + 1e3 * eps:
            rep.skipped += 1
            continue
        rep.checked += 1
        err = abs(a - numeric)
        rel = err / max(abs(a), abs(numeric), atol)
        floor = ROUNDING * np.finfo(np.float64).eps * max(abs(f_plus), abs(f_minus), abs(f_mid)) / eps
        widest_floor = max(widest_floor, floor)
        score = err - (atol + floor + rtol * max(abs(a), abs(numeric)))
        if score > worst_score:
            worst_score = score
            rep.worst_index = tuple(int(j) for j in np.unravel_index(i, target.shape))
            rep.analytic, rep.numeric = a, float(numeric)
        rep.max_abs = max(rep.max_abs, err)
        rep.max_rel = max(rep.max_rel, rel)
        if not score <= 0:  # a NaN score (overflowing or NaN values) fails too
            rep.passed = False
    if rep.checked == 0 and flat.size > 0:
        rep.notes.append("every coordinate sat at a non-differentiable point")
    if widest_floor > atol:
        rep.notes.append(f"|J| is large: rounding widened atol by up to {widest_floor:.1e}")
    return rep


def _frozen_rng(module):
    """Stochastic modules (Dropout) expose ``rng``; replay the same draws for every evaluation."""
    rng = getattr(module, "rng", None)
    if rng is None:
        return lambda: None
    state = rng.bit_generator.state

    def restore():
        rng.bit_generator.state = state

    return restore


def check_module(
    module,
    z: np.ndarray,
    *,
    name: str | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    samples: int | str | None = None,
    seed: int = 0,
) -> list[TensorCheck]:
    """Check B[module, z] and every ∂J/∂θ of a built module (float64) at input ``z`` (N, ...)."""
    rng = np.random.default_rng(seed)
    name = name or type(module).__name__
    z = np.array(z, dtype=np.float64, copy=True)
    restore = _frozen_rng(module)
    restore()
    G = rng.normal(size=module.forward(z).shape)

    def objective() -> float:
        restore()
        return float(np.sum(module.forward(z) * G))

    restore()
    module.zero_grads()
    module.forward(z)
    G_before = G.copy()
    dz = np.array(module.backward(G), copy=True)
    reports = []
    if not np.array_equal(G, G_before):
        bad = TensorCheck(name, "v", G.shape, passed=False, notes=["backward mutated its argument v"])
        reports.append(bad)
    grads = {k: g.copy() for k, _, g in module.parameters()}
    check = partial(compare, eps=eps, rtol=rtol, atol=atol, samples=samples, rng=rng)
    reports.append(check(name, "input", z, dz, objective))
    for key, p, _ in module.parameters():  # its own, then its sub-modules' (body.0.weight)
        reports.append(check(name, key, p, grads[key], objective))
    return reports


def check_loss(
    loss,
    h: np.ndarray,
    y: np.ndarray,
    *,
    name: str | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    samples: int | str | None = None,
    seed: int = 0,
) -> list[TensorCheck]:
    """Check a loss's ∂J/∂h at logits/outputs ``h`` and targets ``y``."""
    rng = np.random.default_rng(seed)
    h = np.array(h, dtype=np.float64, copy=True)
    loss.forward(h, y)
    dh = np.array(loss.backward(), copy=True)
    return [
        compare(
            name or type(loss).__name__,
            "input",
            h,
            dh,
            lambda: loss.forward(h, y),
            eps=eps,
            rtol=rtol,
            atol=atol,
            samples=samples,
            rng=rng,
        )
    ]


def check_chain(
    chain,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    samples: int | str | None = None,
    seed: int = 0,
) -> list[TensorCheck]:
    """End to end: ∂J/∂x and every ∂J/∂θ of the whole chain with its loss, J = loss(chain(x), y)."""
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64, copy=True)
    restores = [_frozen_rng(m) for _, m in chain.named_modules()]

    def objective() -> float:
        for r in restores:
            r()
        return chain.loss.forward(chain.forward(x), y)

    for r in restores:
        r()
    chain.zero_grads()
    h = chain.forward(x)
    chain.loss.forward(h, y)
    dx = np.array(chain.backward(chain.loss.backward()), copy=True)
    check = partial(compare, eps=eps, rtol=rtol, atol=atol, samples=samples, rng=rng)
    reports = [check("chain", "input", x, dx, objective)]
    for key, p, g in list(chain.parameters()):
        reports.append(check("chain", key, p, g.copy(), objective))
    return reports
