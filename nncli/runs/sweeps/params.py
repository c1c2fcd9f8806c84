"""The searched parameters: ``--param path=distribution`` parsed and checked against the config, a
value sampled for a trial as ``--set`` text, and read back as Optuna holds it."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.runs.sweeps.checks import SweepError
from nncli.runs.sweeps.grid import split_values
from nncli.runs.sweeps.trial import Trial


@dataclass(frozen=True)
class Param:
    """One searched config path and its distribution."""

    key: str
    kind: str  # uniform / loguniform / int / logint / choice
    args: tuple

    def to_json(self) -> str:
        return f"{self.kind}({','.join(str(a) for a in self.args)})"


def parse_param(item: str) -> Param:
    """``optimizer.lr=loguniform(1e-4,1e-1)`` → Param; SweepError naming the problem otherwise."""
    key, sep, spec = item.partition("=")
    key, spec = key.strip(), spec.strip()
    m = re.fullmatch(r"([a-z]+)\((.*)\)", spec, flags=re.S)
    if not sep or not key or not m:
        raise SweepError(
            f"--param {item!r}: expected path=distribution, e.g. optimizer.lr=loguniform(1e-4,1e-1) "
            "or model.layers[0].out=choice(64,128)"
        )
    kind, body = m.group(1), m.group(2)
    kinds = ("uniform", "loguniform", "int", "logint", "choice")
    if kind not in kinds:
        from nncli.core.errors import did_you_mean

        raise SweepError(f"--param {item!r}: unknown distribution {kind!r}{did_you_mean(kind, kinds)}")
    values = split_values(body)
    if kind == "choice":
        if not values or any(v == "" for v in values):
            raise SweepError(f"--param {item!r}: choice() needs values, e.g. choice(64,128)")
        return Param(key, kind, tuple(values))
    if len(values) != 2:
        raise SweepError(f"--param {item!r}: {kind}() takes two bounds, low and high")
    try:
        low, high = (int(v) for v in values) if kind in ("int", "logint") else (float(v) for v in values)
    except ValueError:
        raise SweepError(
            f"--param {item!r}: bounds must be {'integers' if 'int' in kind else 'numbers'}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise SweepError(f"--param {item!r}: expected low < high, got {low} and {high}")
    if kind.startswith("log") and low <= 0:
        raise SweepError(f"--param {item!r}: a log scale needs low > 0")
    return Param(key, kind, (low, high))


def parse_params(items: Sequence[str]) -> list[Param]:
    params = [parse_param(i) for i in items]
    keys = [p.key for p in params]
    for k in keys:
        if keys.count(k) > 1:
            raise SweepError(f"--param {k} is given twice")
        if k == "seed":
            raise SweepError("the seed is not a hyper-parameter to search; use --seeds with a grid")
    return params


def validate_params(config: Path, params: Sequence[Param], sets: Sequence[str]) -> None:
    """Load and build the config with each bound and each choice of every param (the others unset)."""
    from nncli.runs.sweeps.checks import validate

    trials = []
    for p in params:
        for v in p.args:
            text = repr(v) if isinstance(v, float) else str(v)
            trials.append(
                Trial(index=0, params={p.key: text}, seed=None, overrides=[*sets, f"{p.key}={text}"])
            )
    validate(config, trials)


def suggest(trial, params: Sequence[Param]) -> dict[str, str]:
    """The sampled value of every param, as ``--set`` text."""
    out = {}
    for p in params:
        if p.kind == "choice":
            value = trial.suggest_categorical(p.key, list(p.args))
        elif p.kind in ("int", "logint"):
            value = trial.suggest_int(p.key, p.args[0], p.args[1], log=p.kind == "logint")
        else:
            value = trial.suggest_float(p.key, p.args[0], p.args[1], log=p.kind == "loguniform")
        out[p.key] = repr(value) if isinstance(value, float) else str(value)
    return out


def native(p: Param, text: str) -> Any:
    """A value of ``p`` back from its ``--set`` text, as Optuna holds it (choices stay text)."""
    if p.kind == "choice":
        return text
    return int(text) if p.kind in ("int", "logint") else float(text)
