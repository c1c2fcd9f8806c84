"""Driving the central-difference checks of ``gradcheck.py`` over a config or over the whole registry.

With a config, every module's own backward function B[M_i, z] is checked at the input z = u[i-1] it
actually sees in the chain (module by module, so one module's error does not pile onto the next), then
the loss's ∂J/∂h, then the whole chain end to end (J = loss(chain(x), y), eq. 7.60).

Without one, every registered module type is checked at each of its ``examples()`` settings, and every
loss: the self-test to run after installing.

``gradcheck(config=None, ...)`` is the library call under ``nncli gradcheck``: it runs either and
returns a ``GradcheckResult`` (the reports and the verdict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import ConfigError, UserError, did_you_mean
from nncli.core.registry import losses as loss_registry
from nncli.core.registry import modules as module_registry
from nncli.diagnostics.gradcheck import TensorCheck, check_chain, check_loss, check_module, check_options
from nncli.diagnostics.tracing import record_inputs

#: examples per batch for the random inputs of the registry self-test and of a config's check
BATCH = 3


def random_targets(loss, output_shape, n: int, rng: np.random.Generator) -> np.ndarray:
    """Valid random targets for ``loss`` given the model's per-example output shape."""
    kind = getattr(loss, "target_kind", "real")
    if kind == "class":
        return rng.integers(0, output_shape[0], size=n)
    if kind == "binary":
        return rng.integers(0, 2, size=n)
    return rng.normal(size=(n, *output_shape))


def check_config_chain(
    chain, x: np.ndarray, y: np.ndarray | None, *, lines: dict | None = None, **kw: Any
) -> list[TensorCheck]:
    """Each module at its own input in the chain, then the loss, then the chain end to end.

    ``chain`` must be built in float64; ``kw`` are ``eps, rtol, atol, samples, seed``.
    """
    x = np.asarray(x, dtype=np.float64)
    inputs = record_inputs(chain, x)
    reports: list[TensorCheck] = []
    for name, m in chain.named_modules():
        line = (lines or {}).get(name)
        setting = f"layer {name}" + (f" (line {line})" if line else "")
        for r in check_module(m, inputs[name], name=m.label(), **kw):
            r.setting = setting
            reports.append(r)
    if chain.loss is not None and y is not None:
        h = chain.forward(x)
        loss_name = chain.loss.label()
        for r in check_loss(chain.loss, h, y, name=loss_name, **kw):
            r.setting = "at the chain output"
            reports.append(r)
        for r in check_chain(chain, x, y, **kw):
            r.setting = "end to end"
            reports.append(r)
    return reports


def load_batch(loaded, chain, n: int, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` training examples of the config's data, read and standardised as ``train``
    does (or of the file ``path`` given on the command line, then with no held-out parts)."""
    from nncli.config.schema import DataConfig
    from nncli.training.data import load_dataset

    cfg = loaded.config
    base = cfg.data.model_dump() if cfg.data is not None else {}
    if path is not None:
        data_cfg, base_dir = DataConfig(**{**base, "source": path, "val_split": 0.0, "test_split": 0.0}), None
    elif cfg.data is not None:
        data_cfg = cfg.data
        base_dir = loaded.folder_of("data.source")  # a base config's folder when a base wrote it
    else:
        raise ValueError("the config has no data section")
    ds = load_dataset(
        data_cfg,
        input_shape=tuple(chain.input_shape),
        loss=chain.loss,
        seed=cfg.seed,
        base_dir=base_dir,
        output_shape=tuple(chain.output_shape()),
    )
    return np.asarray(ds.train.x[:n], dtype=np.float64), np.asarray(ds.train.y[:n])


# -- the registry self-test -------------------------------------------------------------------
def _short(v) -> str:
    # a Residual's layers: show their types, not every hyper-parameter
    if isinstance(v, list) and v and all(isinstance(e, dict) and "type" in e for e in v):
        return "[" + ", ".join(str(e["type"]) for e in v) + "]"
    return str(v)


def _setting_label(hparams: dict, shape) -> str:
    hp = ", ".join(f"{k}={_short(v)}" for k, v in hparams.items())
    return (hp + "; " if hp else "") + f"z: (N, {', '.join(map(str, shape))})"


def _module_settings(entry) -> tuple[type, list[tuple[dict, tuple]]]:
    """(class, settings) for a registry entry; a preset (ReLU) keeps the settings that match it."""
    cls = getattr(entry, "cls", entry)
    settings = list(cls.examples())
    defaults = getattr(entry, "defaults", None)
    if defaults:
        fit = [(hp, s) for hp, s in settings if all(hp.get(k) == v for k, v in defaults.items())]
        settings = fit or [(dict(defaults), settings[0][1])]
    return cls, settings


def check_module_type(entry, *, seed: int = 0, **kw: Any) -> list[TensorCheck]:
    """Every ``examples()`` setting of one module type, on a random batch of BATCH examples."""
    cls, settings = _module_settings(entry)
    reports = []
    for i, (hp, shape) in enumerate(settings):
        rng = np.random.default_rng([seed, i])
        try:
            m = cls(**hp).build(tuple(shape), rng, np.float64)
            z = rng.normal(size=(BATCH, *shape))
            reps = check_module(m, z, name=m.label(), seed=seed, **kw)
        except Exception as exc:  # a module that cannot even run its own example fails, visibly
            label = getattr(cls, "notes_name", "") or module_registry.canonical_name(cls)
            reps = [
                TensorCheck(label, "-", tuple(shape), passed=False, notes=[f"{type(exc).__name__}: {exc}"])
            ]
        for r in reps:
            r.setting = _setting_label(hp, shape)
            reports.append(r)
    return reports


_LOSS_OUTPUT = {"class": (4,), "binary": (1,), "real": (3,)}


def check_loss_type(cls, *, name: str | None = None, seed: int = 0, **kw: Any) -> list[TensorCheck]:
    """One loss on random outputs h (BATCH, C) and valid random targets."""
    loss = cls()
    rng = np.random.default_rng(seed)
    shape = _LOSS_OUTPUT.get(getattr(loss, "target_kind", "real"), (3,))
    h = rng.normal(size=(BATCH, *shape))
    y = random_targets(loss, shape, BATCH, rng)
    reps = check_loss(loss, h, y, name=name or loss_registry.canonical_name(cls), seed=seed, **kw)
    for r in reps:
        r.setting = f"h: (N, {', '.join(map(str, shape))}), {getattr(loss, 'target_kind', 'real')} targets"
    return reps


def check_registry(only: str | None = None, *, seed: int = 0, **kw: Any) -> list[TensorCheck]:
    """Every registered module type and loss, or only the one called ``only`` (a layer or loss name)."""
    if only is not None:
        kind, entry = resolve(only)
        if kind == "loss":
            return check_loss_type(getattr(entry, "cls", entry), seed=seed, **kw)
        return check_module_type(entry, seed=seed, **kw)
    reports = []
    for cls in module_registry.canonical_classes().values():
        reports += check_module_type(cls, seed=seed, **kw)
    for name, cls in loss_registry.canonical_classes().items():
        reports += check_loss_type(cls, name=name, seed=seed, **kw)
    return reports


def resolve(name: str) -> tuple[str, Any]:
    """("module" | "loss", registry entry) for a layer or loss name, with a did-you-mean."""
    for kind, reg in (("module", module_registry), ("loss", loss_registry)):
        try:
            return kind, reg.lookup(name)
        except ConfigError:
            pass
    hint = did_you_mean(name, module_registry.names() + loss_registry.names(), cutoff=0.5)
    raise ConfigError(f"unknown layer or loss type '{name}'{hint}", field="--module")


def verdict(reports: list[TensorCheck]) -> tuple[bool, str]:
    """(all passed, one line saying so)."""
    failed = [r for r in reports if not r.passed]
    checked = sum(r.checked for r in reports)
    skipped = sum(r.skipped for r in reports)
    mods = len({(r.module, r.setting) for r in reports})
    if failed:
        names = ", ".join(sorted({f"{r.module} {r.tensor}" for r in failed}))
        return False, (
            f"FAIL: {len(failed)} of {len(reports)} tensors disagree ({names}); "
            f"{checked} coordinates checked, {skipped} skipped"
        )
    return True, (
        f"PASS: {len(reports)} tensors in {mods} module settings, {checked} coordinates "
        f"checked, {skipped} skipped at non-differentiable points"
    )


# -- the library call under `nncli gradcheck` ------------------------------------------------------------
@dataclass
class GradcheckResult:
    """Every tensor checked, and the verdict. ``to_dict()`` is ``nncli gradcheck --json``'s output."""

    target: str  # the config, the --module name, or "every registered layer and loss"
    passed: bool
    verdict: str
    reports: list[TensorCheck]
    eps: float
    rtol: float
    atol: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "passed": self.passed,
            "verdict": self.verdict,
            "eps": self.eps,
            "rtol": self.rtol,
            "atol": self.atol,
            "seed": self.seed,
            "tensors": [r.to_dict() for r in self.reports],
        }


def gradcheck(
    config: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    module: str | None = None,
    data: str | Path | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    seed: int = 0,
    samples: int | str | None = "auto",
) -> GradcheckResult:
    """Check backward functions against central differences, in float64.

    With ``config``: each module at the input it sees in the chain (a seeded random batch, or the
    first examples of ``data``), the loss, then the chain end to end; ``module`` keeps only the
    tensors of that layer or loss type. Without: every registered layer type at each of its example
    settings and every loss (or only ``module``). ``samples``: random coordinates per tensor ("auto":
    all for tensors of ≤ 2000 elements, else 200).
    """
    check_options(eps, rtol, atol)
    kw: dict[str, Any] = dict(
        eps=eps, rtol=rtol, atol=atol, samples=samples if samples is not None else "auto", seed=seed
    )
    if config is None:
        if data or overrides:
            raise UserError("--data and --set need a CONFIG")
        reports = check_registry(module, **kw)
        target = module or "every registered layer and loss"
    else:
        reports = _check_config(str(config), list(overrides), module, data, seed, kw)
        target = str(config)
    ok, line = verdict(reports)
    return GradcheckResult(target, ok, line, reports, eps, rtol, atol, seed)


def _check_config(path: str, overrides: list[str], module, data, seed: int, kw: dict) -> list[TensorCheck]:
    from nncli.config.memory import check_batch_fits
    from nncli.diagnostics.summary import build_from_config, line_for

    loaded, chain = build_from_config(path, overrides, dtype="float64", seed=seed, with_loss=True)
    rng = np.random.default_rng(seed)
    check_batch_fits(
        loaded, chain, BATCH + 1, np.float64, what="the gradcheck batch", field="model.input_shape"
    )
    y: np.ndarray | None
    if data:
        x, y = load_batch(loaded, chain, BATCH + 1, path=str(data))
    else:
        x = rng.normal(size=(BATCH + 1, *chain.input_shape))
        y = random_targets(chain.loss, chain.output_shape(), len(x), rng) if chain.loss is not None else None
    lines = {n: line_for(loaded, n) for n, _ in chain.named_modules()}
    reports = check_config_chain(chain, x, y, lines=lines, **kw)
    if module:
        kind, entry = resolve(module)
        want = getattr(entry, "cls", entry)
        fixed = getattr(entry, "defaults", {})  # a preset such as ReLU = σ(fn=relu)
        keep = {
            m.label()
            for _, m in chain.named_modules()
            if isinstance(m, want) and all(getattr(m.cfg, k, None) == v for k, v in fixed.items())
        }
        if kind == "loss":
            keep = {chain.loss.label()}
        reports = [r for r in reports if r.module in keep]
    return reports
